package runtime

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// packetPair is a connected pair of SOCK_SEQPACKET unix sockets, as
// memberSock's.
func packetPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "packet")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestMemberMessages(t *testing.T) {
	a, b := packetPair(t)
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req := memberRequest{Op: memberAdd, ID: "m1", Rootfs: "/r", Spec: &specs.Spec{Hostname: "h"}, Trees: []treeRef{{Path: dir, Recursive: true}}}
	if err := sendMember(a, req, []*os.File{f}); err != nil {
		t.Fatal(err)
	}
	var got memberRequest
	files, err := recvMember(b, &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "m1" || got.Spec.Hostname != "h" || len(got.Trees) != 1 || len(files) != 1 {
		t.Fatalf("received %+v with %d files", got, len(files))
	}
	// The descriptor names the same directory.
	var st1, st2 unix.Stat_t
	if err := unix.Fstat(int(files[0].Fd()), &st1); err != nil {
		t.Fatal(err)
	}
	unix.Stat(dir, &st2)
	if st1.Ino != st2.Ino || st1.Dev != st2.Dev {
		t.Errorf("the received descriptor is not the directory sent")
	}
	files[0].Close()

	// Too large: refused on the sending side.
	big := memberRequest{Op: memberAdd, Bundle: strings.Repeat("x", maxMemberMessage)}
	if err := sendMember(a, big, nil); err == nil {
		t.Error("a message over the bound was sent")
	}
	// Not JSON.
	if _, err := a.Write([]byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := recvMember(b, &got); err == nil || !strings.Contains(err.Error(), "parsing") {
		t.Errorf("a malformed message: %v", err)
	}
	// The other end closed.
	a.Close()
	if _, err := recvMember(b, &got); !errors.Is(err, errMemberClosed) {
		t.Errorf("after close: %v, want errMemberClosed", err)
	}
}

// TestBindSource: a path with a tree gets the tree moved into place; one
// without is bound as this namespace sees it.
func TestBindSource(t *testing.T) {
	var f fakeMounts
	f.install(t)
	var moved []string
	om := moveMountFunc
	t.Cleanup(func() { moveMountFunc = om })
	moveMountFunc = func(fromDirfd int, fromPath string, toDirfd int, toPath string, flags int) error {
		if fromPath != "" || toDirfd != unix.AT_FDCWD || flags != unix.MOVE_MOUNT_F_EMPTY_PATH {
			return unix.EINVAL
		}
		moved = append(moved, filepath.Base(toPath))
		return nil
	}
	tf, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr := mountTrees{{Path: "/src", Recursive: true}: {tf}}
	if err := bindSource(tr, "/src", "/t/one", true); err != nil {
		t.Fatal(err)
	}
	if err := tf.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the tree was not closed once moved (close: %v)", err)
	}
	// The tree is used up: the next bind of /src is a plain one.
	if err := bindSource(tr, "/src", "/t/two", true); err != nil {
		t.Fatal(err)
	}
	if err := bindSource(nil, "/other", "/t/three", false); err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0] != "one" {
		t.Errorf("moved %q, want one", moved)
	}
	want := []string{"bind /src two", "bind /other three"}
	if strings.Join(f.mounts, ",") != strings.Join(want, ",") {
		t.Errorf("mounts %q, want %q", f.mounts, want)
	}
}

// TestMemberTreesMove: the trees a member's monitor makes of its rootfs
// and bind sources attach in another place with their content (root only:
// open_tree and move_mount).
func TestMemberTreesMove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("open_tree and move_mount need root")
	}
	rootfs, data, target := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "in-root"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(data, "hosts")
	if err := os.WriteFile(hosts, []byte("h"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{Rootfs: rootfs, Spec: &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"bind", "ro"}},
		{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind"}},
		{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind"}},
	}}}
	refs, files, err := memberTrees(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []treeRef{{rootfs, true}, {hosts, false}, {data, true}}
	if len(refs) != len(want) || len(files) != len(want) {
		t.Fatalf("trees %+v (%d files), want %+v", refs, len(files), want)
	}
	for i := range want {
		if refs[i] != want[i] {
			t.Errorf("tree %d: %+v, want %+v", i, refs[i], want[i])
		}
	}
	tr, err := newMountTrees(refs, files)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	entry := filepath.Join(target, "root")
	if err := os.Mkdir(entry, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := bindSource(tr, rootfs, entry, true); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(entry, unix.MNT_DETACH)
	if _, err := os.Stat(filepath.Join(entry, "in-root")); err != nil {
		t.Errorf("the moved rootfs tree lacks its file: %v", err)
	}

	// A bind source that is gone fails naming the mount.
	b.Spec.Mounts = append(b.Spec.Mounts, specs.Mount{Destination: "/gone", Type: "bind", Source: filepath.Join(data, "gone")})
	if _, _, err := memberTrees(b); err == nil || !strings.Contains(err.Error(), `"/gone"`) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("memberTrees with a missing source: %v", err)
	}
}

// memberHost is a sandbox VM of fakes whose monitor serves its control and
// member sockets, with open_tree and move_mount faked (a tree is an O_PATH
// descriptor of the path; moving it records the target).
func memberHost(t *testing.T, edit func(*Instance)) (*monitor, *fakeHost, Config, func() []string) {
	t.Helper()
	h, _, c := sharedRootHost(t)
	ot, mm := openTreeFunc, moveMountFunc
	t.Cleanup(func() { openTreeFunc, moveMountFunc = ot, mm })
	openTreeFunc = func(dfd int, path string, flags uint) (int, error) {
		return unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	var mu sync.Mutex
	moved := &[]string{}
	moveMountFunc = func(from int, _ string, _ int, to string, _ int) error {
		mu.Lock()
		defer mu.Unlock()
		*moved = append(*moved, to)
		return nil
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	withHosts := func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"bind"}})
	}
	sb := loadBundle(t, withHosts)
	sd := mkStateDir(t, c, "infra")
	inst, err := boot(context.Background(), c, sb, "infra", sd, false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	if !inst.takesMembers() {
		t.Fatal("a VM with a root share and host binds does not take members")
	}
	if edit != nil {
		edit(inst)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitor{c: c, dir: sd, inst: inst, st: &State{ID: "infra"}, log: log.New(io.Discard, "", 0), start: make(chan struct{})}
	if err := m.listen(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		m.dropMembers()
		inst.Shutdown(context.Background(), time.Second)
	})
	return m, h, c, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), *moved...)
	}
}

// TestMonitorMembers: a member's monitor joins the sandbox's VM with its
// rootfs and binds as trees, creates its process in its own container,
// and leaves when it asks or when its connection ends.
func TestMonitorMembers(t *testing.T) {
	m, h, c, moved := memberHost(t, nil)
	mb := loadBundle(t, nil)
	mem, err := joinSandbox(context.Background(), c, mb, "app", "infra", mkStateDir(t, c, "app"))
	if err != nil {
		t.Fatal(err)
	}
	h.agent.mu.Lock()
	s := h.agent.setups[len(h.agent.setups)-1]
	h.agent.mu.Unlock()
	if s.ContainerId != "app" || !strings.HasPrefix(s.RootPath, "m-") {
		t.Errorf("the member's setup %+v", s)
	}
	if got := moved(); len(got) != 1 || filepath.Base(got[0]) != s.RootPath {
		t.Errorf("trees moved to %q, want the member's root entry %q", got, s.RootPath)
	}
	if _, err := mem.CreateProcess(context.Background(), "app", mb.Spec.Process); err != nil {
		t.Fatal(err)
	}
	h.agent.mu.Lock()
	cr := h.agent.creates[len(h.agent.creates)-1]
	h.agent.mu.Unlock()
	if cr.ContainerId != "app" {
		t.Errorf("the member's process was created in container %q", cr.ContainerId)
	}
	// Pausing a member freezes its processes; the VM runs on for the
	// others, and so does the sandbox's own pause while it has members.
	vm := m.inst.vm.(*fakeVM)
	frozen := func(id string) bool {
		h.agent.mu.Lock()
		defer h.agent.mu.Unlock()
		return h.agent.frozen[id]
	}
	if err := mem.Pause(context.Background()); err != nil || !frozen("app") || vm.paused {
		t.Errorf("pausing a member: %v; frozen %v, the VM paused %v: want its container frozen, the VM running", err, frozen("app"), vm.paused)
	}
	if err := mem.Resume(context.Background()); err != nil || frozen("app") {
		t.Errorf("resuming a member: %v; frozen %v", err, frozen("app"))
	}
	svc := &monitorService{m}
	m.st.Status = StatusRunning
	if _, err := svc.Pause(context.Background(), nil); err != nil || !frozen("") || vm.paused || m.vmPaused.Load() {
		t.Errorf("pausing the sandbox with a member: %v; frozen %v, the VM paused %v", err, frozen(""), vm.paused)
	}
	if _, err := svc.Resume(context.Background(), nil); err != nil || frozen("") || m.st.Status == StatusPaused {
		t.Errorf("resuming the sandbox: %v; frozen %v, status %s", err, frozen(""), m.st.Status)
	}
	// A second member with the same id is refused.
	if _, err := joinSandbox(context.Background(), c, mb, "app", "infra", mkStateDir(t, c, "app2")); err == nil || !strings.Contains(err.Error(), "member already") {
		t.Errorf("a second member %q: %v", "app", err)
	}
	if err := mem.Shutdown(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := h.agent.removedCopy(); len(got) != 1 || got[0] != "app" {
		t.Errorf("removed %q after the member's shutdown, want app", got)
	}
	if _, err := os.Stat(filepath.Join(m.dir, "root", s.RootPath)); !os.IsNotExist(err) {
		t.Errorf("the member's root entry is left: %v", err)
	}

	// A member whose monitor ends without a word is removed too.
	gone, err := joinSandbox(context.Background(), c, mb, "gone", "infra", mkStateDir(t, c, "gone"))
	if err != nil {
		t.Fatal(err)
	}
	gone.destroy()
	poll := time.Now().Add(5 * time.Second)
	for len(h.agent.removedCopy()) < 2 && time.Now().Before(poll) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.agent.removedCopy(); len(got) != 2 || got[1] != "gone" {
		t.Errorf("removed %q after a member's connection closed, want app and gone", got)
	}
	t0 := time.Now()
	m.awaitMembers(time.Minute)
	if d := time.Since(t0); d > time.Second {
		t.Errorf("awaitMembers with no member waited %s", d)
	}
}

// TestMonitorMembersRefused: a switch-root VM and a VM that has stopped
// taking members refuse a member with an error naming it, and a member of
// a container that takes none is told so.
func TestMonitorMembersRefused(t *testing.T) {
	_, _, c, _ := memberHost(t, func(inst *Instance) { inst.switchRoot = true })
	mb := loadBundle(t, nil)
	if _, err := joinSandbox(context.Background(), c, mb, "app", "infra", mkStateDir(t, c, "app")); err == nil || !strings.Contains(err.Error(), "switch-root") {
		t.Errorf("joining a switch-root VM: %v", err)
	}
	// A sandbox paused alone is a paused VM: it takes no member until
	// resumed, and says so.
	m, h, c, _ := memberHost(t, nil)
	m.st.Status = StatusRunning
	svc := &monitorService{m}
	if _, err := svc.Pause(context.Background(), nil); err != nil || !m.inst.vm.(*fakeVM).paused {
		t.Fatalf("pausing a sandbox without members: %v; want its VM paused", err)
	}
	h.agent.mu.Lock()
	if len(h.agent.frozen) != 0 {
		t.Errorf("pausing a sandbox without members froze %v", h.agent.frozen)
	}
	h.agent.mu.Unlock()
	if _, err := joinSandbox(context.Background(), c, mb, "app", "infra", mkStateDir(t, c, "app")); err == nil || !strings.Contains(err.Error(), "is paused") {
		t.Errorf("joining a paused VM: %v", err)
	}
	if _, err := svc.Resume(context.Background(), nil); err != nil || m.inst.vm.(*fakeVM).paused {
		t.Errorf("resuming a sandbox without members: %v", err)
	}
	m, _, c, _ = memberHost(t, nil)
	m.mainExited.Store(true)
	if _, err := joinSandbox(context.Background(), c, mb, "app", "infra", mkStateDir(t, c, "app")); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("joining a VM whose container exited: %v", err)
	}
	mkStateDir(t, c, "plain")
	if _, err := joinSandbox(context.Background(), c, mb, "app", "plain", mkStateDir(t, c, "app")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("joining a container without a member socket: %v, want ErrUnsupported", err)
	}
}
