package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Side effects of the member protocol, replaced by tests.
var (
	openTreeFunc  = unix.OpenTree
	moveMountFunc = unix.MoveMount
)

// bindSource binds src on target (recursively or not), or attaches there
// the tree t holds of it (a member's, made in its monitor's namespace).
func bindSource(t mountTrees, src, target string, recursive bool) error {
	if f := t.take(src, recursive); f != nil {
		defer f.Close()
		if err := moveMountFunc(int(f.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attaching the mount tree of %q on %q: %w", src, target, err)
		}
		return nil
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	return mountFunc(src, target, "", flags, "")
}

// openTree makes a detached copy of the mount at path (with the mounts
// below it when recursive).
func openTree(path string, recursive bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := openTreeFunc(unix.AT_FDCWD, path, flags)
	if err != nil {
		return nil, fmt.Errorf("copying the mount tree of %q: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// memberTrees opens the trees a member's sandbox needs of bundle b: its
// rootfs (recursive, as rootShare.bind binds it) and the source of each
// bind mount the guest gets through the shared directory (shareMounts).
// On error none is left open.
func memberTrees(b *bundle.Bundle) (refs []treeRef, files []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			files = nil
		}
	}()
	add := func(path string, recursive bool) error {
		f, err := openTree(path, recursive)
		if err != nil {
			return err
		}
		refs = append(refs, treeRef{Path: path, Recursive: recursive})
		files = append(files, f)
		return nil
	}
	if err := add(b.Rootfs, true); err != nil {
		return nil, nil, err
	}
	for _, m := range guestCgroupMounts(b.Spec.Mounts) {
		if !sharedBind(m) || !filepath.IsAbs(m.Source) {
			continue
		}
		if err := add(m.Source, hasOption(m.Options, "rbind")); err != nil {
			return nil, nil, fmt.Errorf("bind mount on %q: %w", m.Destination, err)
		}
	}
	return refs, files, nil
}

// sendMember writes one message with files attached.
func sendMember(conn *net.UnixConn, v any, files []*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxMemberMessage {
		return fmt.Errorf("message of %d bytes exceeds %d", len(b), maxMemberMessage)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = conn.WriteMsgUnix(b, oob, nil)
	return err
}

// maxMemberFiles bounds the descriptors one message may carry.
const maxMemberFiles = 250

// recvMember reads one message into v and returns the files it carried.
func recvMember(conn *net.UnixConn, v any) ([]*os.File, error) {
	buf := make([]byte, maxMemberMessage+1)
	oob := make([]byte, unix.CmsgSpace(4*maxMemberFiles))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	if errors.Is(err, io.EOF) {
		return nil, errMemberClosed
	}
	if err != nil {
		return nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("parsing the descriptors of a message: %w", err)
		}
		for _, msg := range msgs {
			fds, err := unix.ParseUnixRights(&msg)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "mount tree"))
			}
		}
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > maxMemberMessage {
		closeAll()
		return nil, fmt.Errorf("a message over %d bytes or %d descriptors", maxMemberMessage, maxMemberFiles)
	}
	if n == 0 {
		closeAll()
		return nil, errMemberClosed
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		closeAll()
		return nil, fmt.Errorf("parsing a message: %w", err)
	}
	return files, nil
}

// errMemberClosed: the other end closed the member connection.
var errMemberClosed = errors.New("connection closed")

// members are the pod members a monitor's VM took (member.go), each with
// its connection: when it closes (the member's monitor ended, even by
// SIGKILL) the member is removed.
type members struct {
	mu   sync.Mutex
	all  map[string]*Instance
	done bool // the sandbox is going: no more members
}

// count is how many members the VM has.
func (ms *members) count() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.all)
}

// serveMembers accepts members on memberSock until ctx ends.
func (m *monitor) serveMembers(ctx context.Context) error {
	path := filepath.Join(m.dir, memberSock)
	os.Remove(path)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("listening on %q: %w", path, err)
	}
	if err := vmm.RestrictSockets(path); err != nil {
		l.Close()
		return err
	}
	m.members.all = map[string]*Instance{}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			conn, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go m.serveMember(ctx, conn)
		}
	}()
	return nil
}

// serveMember adds the member conn asks for, then removes it when asked
// or when conn closes.
func (m *monitor) serveMember(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	var req memberRequest
	files, err := recvMember(conn, &req)
	if err != nil {
		m.log.Printf("monitor: a member request: %v", err)
		return
	}
	trees, err := newMountTrees(req.Trees, files)
	var mem *Instance
	if err == nil {
		mem, err = m.addMember(ctx, req, trees)
		trees.close()
	}
	reply := memberReply{Driver: m.inst.Driver}
	if err != nil {
		reply = memberReply{Error: err.Error()}
		m.log.Printf("monitor: %v", err)
	}
	if err := sendMember(conn, reply, nil); err != nil || mem == nil {
		if mem != nil {
			m.dropMember(mem)
		}
		return
	}
	m.log.Printf("monitor: container %q joined the VM", mem.ID)
	var next memberRequest
	_, rerr := recvMember(conn, &next)
	err = m.dropMember(mem)
	if rerr == nil && next.Op == memberRemove {
		reply = memberReply{}
		if err != nil {
			reply.Error = err.Error()
		}
		_ = sendMember(conn, reply, nil)
	} else if err != nil {
		m.log.Printf("monitor: %v", err)
	}
}

// addMember adds the member req describes to the monitor's VM.
func (m *monitor) addMember(ctx context.Context, req memberRequest, trees mountTrees) (*Instance, error) {
	if req.Op != memberAdd {
		return nil, fmt.Errorf("a member's first request is %q, not %q", req.Op, memberAdd)
	}
	if err := ValidateID(req.ID); err != nil {
		return nil, err
	}
	if req.Spec == nil || req.Spec.Process == nil || !filepath.IsAbs(req.Rootfs) {
		return nil, fmt.Errorf("adding container %q to the VM of %q: the request lacks its spec, process or rootfs", req.ID, m.st.ID)
	}
	if m.inst.switchRoot {
		return nil, fmt.Errorf("adding container %q to the VM of %q: %w: that container is its VM's PID 1 (switch-root)", req.ID, m.st.ID, ErrUnsupported)
	}
	m.members.mu.Lock()
	_, dup := m.members.all[req.ID]
	done := m.members.done
	m.members.mu.Unlock()
	if dup || done || m.mainExited.Load() {
		return nil, fmt.Errorf("adding container %q to the VM of %q: it is a member already, or the VM is stopping: %w", req.ID, m.st.ID, ErrWrongState)
	}
	if m.vmPaused.Load() {
		return nil, fmt.Errorf("adding container %q to the VM of %q: that container is paused, and with it its VM (resume it first): %w", req.ID, m.st.ID, ErrWrongState)
	}
	b := &bundle.Bundle{Dir: req.Bundle, Spec: req.Spec, Rootfs: req.Rootfs}
	mem, err := m.inst.addContainer(ctx, m.c, b, req.ID, trees)
	if err != nil {
		return nil, err
	}
	m.members.mu.Lock()
	defer m.members.mu.Unlock()
	if m.members.done {
		go mem.removeMember(context.Background())
		return nil, fmt.Errorf("adding container %q to the VM of %q: the VM is stopping: %w", req.ID, m.st.ID, ErrWrongState)
	}
	m.members.all[req.ID] = mem
	return mem, nil
}

// dropMember removes mem from the VM (once: its own removal and the
// sandbox's teardown may both ask).
func (m *monitor) dropMember(mem *Instance) error {
	m.members.mu.Lock()
	delete(m.members.all, mem.ID)
	m.members.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return mem.removeMember(ctx)
}

// memberGrace bounds how long a VM outlives its own container for the
// members still in it: podman stops a pod's containers all at once, and
// each member's stop (its signal, its timeout, 10 s by default) decides
// how it ends, as under runc, where the infra container's exit ends no
// other container.
var memberGrace = 30 * time.Second

// awaitMembers waits until no member is left, at most grace.
func (m *monitor) awaitMembers(grace time.Duration) {
	deadline := time.Now().Add(grace)
	logged := false
	for {
		m.members.mu.Lock()
		n := len(m.members.all)
		m.members.mu.Unlock()
		if n == 0 || !time.Now().Before(deadline) {
			return
		}
		if !logged {
			m.log.Printf("monitor: the container exited; its VM stays for the %d other container(s) in it, at most %s", n, grace)
			logged = true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dropMembers removes every member before the VM goes: their processes
// end (their monitors see the VM's end), their mounts are released.
func (m *monitor) dropMembers() {
	m.members.mu.Lock()
	m.members.done = true
	all := make([]*Instance, 0, len(m.members.all))
	for _, mem := range m.members.all {
		all = append(all, mem)
	}
	m.members.mu.Unlock()
	for _, mem := range all {
		if err := m.dropMember(mem); err != nil {
			m.log.Printf("monitor: %v", err)
		}
	}
}

// remoteSandbox is a member's link to its sandbox's monitor: the member
// connection (whose end is the VM's end for the member) and the control
// connection whose forwarded agent service drives the member's processes.
type remoteSandbox struct {
	id      string
	conn    *net.UnixConn
	control *controlConn
	replies chan memberReply
	once    sync.Once
}

// memberJoinTimeout bounds the sandbox's adding of a member (its mounts
// and Setup in the guest).
var memberJoinTimeout = 2 * time.Minute

// joinSandbox adds container id of bundle b to the VM of container
// sandbox, through its monitor, and returns the member's Instance. On
// error nothing of it is left in the VM.
func joinSandbox(ctx context.Context, c Config, b *bundle.Bundle, id, sandbox, dir string) (_ *Instance, err error) {
	what := fmt.Sprintf("container %q: joining the VM of container %q", id, sandbox)
	refs, files, err := memberTrees(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	sdir := stateDir(c, sandbox)
	addr := &net.UnixAddr{Name: filepath.Join(sdir, memberSock), Net: "unixpacket"}
	conn, err := net.DialUnix("unixpacket", nil, addr)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
		return nil, fmt.Errorf("%s: %w: its VM takes no other containers (only a VM with a network namespace of the engine's does, and not a switch-root one)", what, ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if err != nil {
			conn.Close() // the sandbox removes what it added
		}
	}()
	req := memberRequest{Op: memberAdd, ID: id, Bundle: b.Dir, Rootfs: b.Rootfs, Spec: b.Spec, Trees: refs}
	if err := sendMember(conn, req, files); err != nil {
		return nil, fmt.Errorf("%s: sending the request: %w", what, err)
	}
	for _, f := range files {
		f.Close()
	}
	files = nil
	conn.SetReadDeadline(time.Now().Add(memberJoinTimeout))
	var reply memberReply
	if _, err := recvMember(conn, &reply); err != nil {
		return nil, fmt.Errorf("%s: waiting for its monitor's answer: %w", what, err)
	}
	conn.SetReadDeadline(time.Time{})
	if reply.Error != "" {
		return nil, fmt.Errorf("%s: %s", what, guestText(reply.Error, maxAgentErrorBytes))
	}
	cc, err := dialMonitor(c, sandbox)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	r := &remoteSandbox{id: sandbox, conn: conn, control: cc, replies: make(chan memberReply, 1)}
	inst := &Instance{
		ID: id, Bundle: b, StateDir: dir, Driver: reply.Driver, Agent: cc.Agent, client: cc.client,
		consoleLog: filepath.Join(sdir, consoleLogFile), exited: make(chan struct{}), containerID: id, remote: r,
	}
	go r.follow(inst)
	return inst, nil
}

// follow reads the sandbox's replies until the connection ends, which
// means the sandbox's monitor (and so its VM) ended or removed the member.
func (r *remoteSandbox) follow(inst *Instance) {
	for {
		var reply memberReply
		if _, err := recvMember(r.conn, &reply); err != nil {
			inst.waitErr = fmt.Errorf("the monitor of container %q, whose VM this container shares, ended", r.id)
			close(inst.exited)
			r.close()
			return
		}
		select {
		case r.replies <- reply:
		default:
		}
	}
}

// remove asks the sandbox to remove the member and waits for its answer.
func (r *remoteSandbox) remove(ctx context.Context, exited <-chan struct{}) error {
	if err := sendMember(r.conn, memberRequest{Op: memberRemove}, nil); err != nil {
		return nil // the connection is gone: so is the member
	}
	select {
	case reply := <-r.replies:
		if reply.Error != "" {
			return fmt.Errorf("removing the container from the VM of %q: %s", r.id, guestText(reply.Error, maxAgentErrorBytes))
		}
		return nil
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("removing the container from the VM of %q: %w", r.id, ctx.Err())
	}
}

// close ends both connections; the sandbox then removes the member.
func (r *remoteSandbox) close() {
	r.once.Do(func() {
		r.conn.Close()
		r.control.Close()
	})
}
