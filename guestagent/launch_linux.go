package guestagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// helperLauncher starts processes through the process helper (package
// procinit).
type helperLauncher struct {
	reaper *reaper
	// exe is the helper's program: procinit.Path in the initrd (tests
	// run their own binary, which serves as one).
	exe string
	// file is exe, opened when the launcher is made: a helper that joins a
	// container's mount namespace is exec'd through it (joinedExe), as
	// exe's path names another file, or none, in the container's tree.
	file    *os.File
	fileErr error
	// readyTimeout bounds the wait for the helper's "ready" and for its
	// exec after the start byte.
	readyTimeout time.Duration
	// spare is a template's spare helper (spare_linux.go).
	spare spareSlot
	// lastCap caches procinit.LastCapability: the kernel's, read once.
	lastCap func() int
	// joinCgroup moves a started helper into its container's cgroup
	// (the function joinCgroup; tests count the moves).
	joinCgroup func(procs string, pid, main int) error
}

func newHelperLauncher(r *reaper, exe string) *helperLauncher {
	l := &helperLauncher{reaper: r, exe: exe, readyTimeout: 10 * time.Second, lastCap: sync.OnceValue(procinit.LastCapability),
		joinCgroup: joinCgroup}
	// Close-on-exec: the helper's exec of /proc/self/fd/N opens the
	// program before the descriptor goes.
	if l.file, l.fileErr = os.Open(exe); l.fileErr != nil {
		l.fileErr = fmt.Errorf("opening the process helper: %w", l.fileErr)
	}
	return l
}

// joinedExe is the helper's program as a child in a container's mount
// namespace finds it: the agent's descriptor of it, through the /proc of
// the PID namespace the child is in (the container's, or the VM's).
func (l *helperLauncher) joinedExe() (string, error) {
	if l.fileErr != nil {
		return "", l.fileErr
	}
	return fmt.Sprintf("/proc/self/fd/%d", l.file.Fd()), nil
}

// spawn starts the helper as a child of the agent with files as its
// descriptors 0-5, in new namespaces flags (or req's joined ones).
func (l *helperLauncher) spawn(req launchRequest, files []uintptr, flags uintptr, _ []*os.File) (int, <-chan exitInfo, error) {
	return l.start(req, files, flags, -1)
}

// spawnInCgroup starts the helper as spawn does, in the cgroup whose
// cgroup.procs is procs from its first instruction (clone3's
// CLONE_INTO_CGROUP): no migration after the start, which under TCG took
// 1-19 ms of each process's start. in is false, with no error, when the
// kernel refuses that (a cgroup that enabled controllers for its children
// holds no process: EBUSY; a kernel before 5.7: ENOSYS or EINVAL); the
// caller then spawns and joins the cgroup as before.
func (l *helperLauncher) spawnInCgroup(req launchRequest, files []uintptr, flags uintptr, procs string) (pid int, exited <-chan exitInfo, in bool, err error) {
	dir := filepath.Dir(procs)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, false, fmt.Errorf("opening the cgroup %s: %w", dir, err)
	}
	defer unix.Close(fd)
	pid, exited, err = l.start(req, files, flags, fd)
	switch {
	case err == nil:
		return pid, exited, true, nil
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		return 0, nil, false, nil
	default:
		return 0, nil, false, err
	}
}

// start is spawn, into the cgroup of cgroupFd unless it is -1.
func (l *helperLauncher) start(req launchRequest, files []uintptr, flags uintptr, cgroupFd int) (int, <-chan exitInfo, error) {
	exited := make(chan exitInfo, 1)
	attr := &syscall.ProcAttr{Env: []string{}, Files: files}
	if flags != 0 || cgroupFd >= 0 {
		attr.Sys = &syscall.SysProcAttr{Cloneflags: flags}
		if cgroupFd >= 0 {
			attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, cgroupFd
		}
	}
	pid, err := l.reaper.Start(func() (int, error) {
		if req.JoinNamespacesOf == 0 {
			return syscall.ForkExec(l.exe, []string{procinit.Arg0}, attr)
		}
		exe := l.exe
		if slices.Contains(req.JoinNamespaces, "mount") {
			var err error
			if exe, err = l.joinedExe(); err != nil {
				return 0, err
			}
		}
		return forkExecInNamespaces(req.JoinNamespacesOf, req.JoinNamespaces, exe, []string{procinit.Arg0}, attr)
	}, func(e exitInfo) { exited <- e })
	if err != nil {
		return 0, nil, fmt.Errorf("starting the process helper %q: %w", l.exe, err)
	}
	return pid, exited, nil
}

// Launch starts the helper with the process's stdio, sends it the
// configuration and waits until it is ready to exec (or has failed).
func (l *helperLauncher) Launch(ctx context.Context, req launchRequest) (_ *launched, err error) {
	var childEnds []*os.File // closed in the agent once the helper has them
	var agentEnds []io.Closer
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
		if err != nil {
			for _, c := range agentEnds {
				c.Close()
			}
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err != nil {
			return nil, nil, fmt.Errorf("creating a pipe: %w", err)
		}
		return r, w, nil
	}

	h := &launched{}
	var stdio [3]*os.File
	proc, err := procinit.ProcessOf(req.Process, l.lastCap())
	if err != nil {
		return nil, errorf(ErrInvalidArgument, "process: %w", err)
	}
	cfg := procinit.Config{Process: proc, Rootfs: req.Rootfs, Seccomp: req.Seccomp, SeccompFlags: req.SeccompFlags}
	switch {
	case slices.Contains(req.NewNamespaces, "mount"):
		// Its root is pivoted to, not chrooted into.
		cfg.Pivot, cfg.RootPropagation = true, uint64(req.RootPropagation)
		if slices.Contains(req.NewNamespaces, "cgroup") {
			cfg.NewCgroupns, cfg.CgroupMount, cfg.CgroupReadonly = true, req.CgroupMount, req.CgroupReadonly
		}
	case slices.Contains(req.JoinNamespaces, "mount"):
		// setns(2) has made the container's root its root.
		cfg.Rootfs = ""
	}
	ipc, uts := slices.Contains(req.NewNamespaces, "ipc"), slices.Contains(req.NewNamespaces, "uts")
	if uts {
		cfg.Hostname = req.Hostname
	}
	if ipc || uts {
		only := namespacedSysctls(ipc, uts)
		for name, value := range req.Sysctls {
			if only(name) {
				if cfg.Sysctls == nil {
					cfg.Sysctls = map[string]string{}
				}
				cfg.Sysctls[name] = value
			}
		}
	}
	if mountsOwnProc(req.NewNamespaces, req.JoinNamespaces) && req.Rootfs != "" {
		cfg.MountProc = filepath.Join(req.Rootfs, "proc")
		cfg.ProcMounts = req.ProcMounts
		cfg.Masked, cfg.Readonly = req.Masked, req.Readonly
	}
	switch {
	case req.Console != nil:
		stdio = [3]*os.File{req.Console, req.Console, req.Console}
		cfg.TryCtty = isTerminal(req.Console)
	case req.Process.Terminal:
		master, slave, err := openPty(ptmxFor(req.Rootfs))
		if err != nil {
			return nil, err
		}
		agentEnds = append(agentEnds, master)
		childEnds = append(childEnds, slave)
		if cs := req.Process.ConsoleSize; cs != nil {
			if err := resizePty(master, uint16(cs.Width), uint16(cs.Height)); err != nil {
				return nil, err
			}
		}
		stdio = [3]*os.File{slave, slave, slave}
		cfg.Ctty = true
		if cfg.Pivot && req.Rootfs != "" {
			// config.md "terminal": runc's first process also finds its
			// terminal as /dev/console.
			cfg.Console = filepath.Join(req.Rootfs, "dev/console")
		}
		h.Stdout = master
		h.Stdin = ptyStdin{master}
		h.Resize = func(w, hh uint16) error { return resizePty(master, w, hh) }
	default:
		inR, inW, err := pipe()
		if err != nil {
			return nil, err
		}
		agentEnds, childEnds = append(agentEnds, inW), append(childEnds, inR)
		outR, outW, err := pipe()
		if err != nil {
			return nil, err
		}
		agentEnds, childEnds = append(agentEnds, outR), append(childEnds, outW)
		errR, errW, err := pipe()
		if err != nil {
			return nil, err
		}
		agentEnds, childEnds = append(agentEnds, errR), append(childEnds, errW)
		stdio = [3]*os.File{inR, outW, errW}
		h.Stdin, h.Stdout, h.Stderr = inW, outR, errR
	}

	cfgR, cfgW, err := pipe()
	if err != nil {
		return nil, err
	}
	agentEnds, childEnds = append(agentEnds, cfgW), append(childEnds, cfgR)
	startR, startW, err := pipe()
	if err != nil {
		return nil, err
	}
	agentEnds, childEnds = append(agentEnds, startW), append(childEnds, startR)
	statusR, statusW, err := pipe()
	if err != nil {
		return nil, err
	}
	agentEnds, childEnds = append(agentEnds, statusR), append(childEnds, statusW)

	files := []uintptr{stdio[0].Fd(), stdio[1].Fd(), stdio[2].Fd(), cfgR.Fd(), startR.Fd(), statusW.Fd()}
	// A cgroup namespace is made by the helper once it is in the
	// container's cgroup (its root is the cgroup it is made in).
	flags, err := cloneFlags(slices.DeleteFunc(slices.Clone(req.NewNamespaces), func(ns string) bool { return ns == "cgroup" }))
	if err != nil {
		return nil, err
	}
	var outputs []*os.File
	for _, r := range []io.ReadCloser{h.Stdout, h.Stderr} {
		if f, ok := r.(*os.File); ok {
			outputs = append(outputs, f)
		}
	}
	spawn := l.spawn
	if req.PID1 != nil {
		spawn = req.PID1.spawn
	}
	var pid int
	var exited <-chan exitInfo
	inCgroup := false
	if sp := l.spare.take(); sp != nil {
		switch {
		case req.PID1 != nil || !sp.fits(req.JoinNamespacesOf, flags):
			// Not kept: it would only hold the template's memory.
			sp.discard()
		case sp.hand(files) == nil:
			pid, exited = sp.pid, sp.exited
			cfg.UnshareMount = flags&syscall.CLONE_NEWNS != 0
			inCgroup = sp.procs != "" && sp.procs == req.CgroupProcs
		}
		// A spare that could not take its descriptors is gone (hand
		// killed it): the process gets a helper of its own.
	}
	if pid == 0 && req.PID1 == nil && req.CgroupProcs != "" {
		if pid, exited, inCgroup, err = l.spawnInCgroup(req, files, flags, req.CgroupProcs); err != nil {
			return nil, err
		}
	}
	if pid == 0 {
		if pid, exited, err = spawn(req, files, flags, outputs); err != nil {
			return nil, err
		}
	}
	h.Pid = pid
	h.Exited = exited
	if req.CgroupProcs != "" && !inCgroup {
		// Before the helper reads its configuration: all it does is in
		// the container's cgroup, and its cgroup namespace is rooted there.
		if err := l.joinCgroup(req.CgroupProcs, pid, req.JoinNamespacesOf); err != nil {
			_ = unix.Kill(pid, unix.SIGKILL)
			return nil, fmt.Errorf("moving the process helper (pid %d) into %s: %w", pid, req.CgroupProcs, err)
		}
	}
	helperFailed := false
	defer func() {
		if err == nil {
			return
		}
		if helperFailed {
			// It exits by itself right after saying why.
			select {
			case <-exited:
				return
			case <-time.After(l.readyTimeout):
			}
		}
		_ = unix.Kill(pid, unix.SIGKILL) // the reaper collects it
	}()
	for _, f := range childEnds {
		f.Close()
	}
	childEnds = nil

	b, err := cfg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := cfgW.Write(b); err != nil {
		return nil, fmt.Errorf("sending the process configuration to the helper: %w", err)
	}
	cfgW.Close()

	// "ready", or the reason it cannot run.
	line, err := readStatus(ctx, statusR, l.readyTimeout)
	switch {
	case err != nil:
		return nil, fmt.Errorf("waiting for the process helper (pid %d): %w", pid, err)
	case line == procinit.Ready:
	case strings.HasPrefix(line, procinit.ErrorPrefix):
		helperFailed = true
		return nil, helperError(strings.TrimPrefix(line, procinit.ErrorPrefix))
	case line == "":
		helperFailed = true
		return nil, fmt.Errorf("the process helper (pid %d) exited before it was ready", pid)
	default:
		return nil, fmt.Errorf("the process helper (pid %d) said %q", pid, line)
	}

	// Start and Release share the pipes: Release waits for a Start in
	// progress, whose read ends when the helper execs or exits.
	var pipesMu sync.Mutex
	pipesOpen := true
	closePipes := func() {
		if pipesOpen {
			startW.Close()
			statusR.Close()
			pipesOpen = false
		}
	}
	h.Release = func() {
		pipesMu.Lock()
		defer pipesMu.Unlock()
		closePipes()
	}
	h.Start = func(ctx context.Context) error {
		pipesMu.Lock()
		defer pipesMu.Unlock()
		if !pipesOpen {
			return errorf(ErrFailedPrecondition, "the process exited before it started")
		}
		defer closePipes()
		_, err := startW.Write([]byte{1})
		if err != nil {
			return errorf(ErrFailedPrecondition, "the process exited before it started: %w", err)
		}
		// A successful exec closes the status pipe (close-on-exec) with
		// nothing written; a failed one writes why.
		line, err := readStatus(ctx, statusR, l.readyTimeout)
		switch {
		case err != nil:
			return fmt.Errorf("waiting for the exec: %w", err)
		case line == "":
			return nil
		case strings.HasPrefix(line, procinit.ErrorPrefix):
			return helperError(strings.TrimPrefix(line, procinit.ErrorPrefix))
		default:
			return fmt.Errorf("the process helper said %q", line)
		}
	}
	return h, nil
}

// mountsOwnProc reports whether a container's first process, started with
// the namespaces newNs of its own and joining joinNs, mounts the /proc of
// its PID namespace on its root's /proc (Launch's Config.MountProc), with
// the spec's masks under it: PID 1 of a new PID namespace, and a process
// that joins another container's (a pod's shared one) in a mount
// namespace of its own, for which the agent's /proc would show the wrong
// namespace. Setup then leaves the masks under /proc to it (setupRoot).
func mountsOwnProc(newNs, joinNs []string) bool {
	return slices.Contains(newNs, "pid") || slices.Contains(joinNs, "pid") && slices.Contains(newNs, "mount")
}

// mountsUnder are the mount points of mounted strictly below dir, in
// order.
func mountsUnder(mounted []string, dir string) []string {
	var under []string
	for _, m := range mounted {
		if m != dir && procinit.Within(m, dir) {
			under = append(under, m)
		}
	}
	return under
}

// helperError turns the helper's error text into an error, keeping "not
// found" recognisable.
func helperError(msg string) error {
	if strings.Contains(msg, "executable file not found in $PATH") || strings.Contains(msg, "no such file or directory") {
		return errorf(ErrNotFound, "%s", msg)
	}
	return errors.New(msg)
}

// readStatus reads one line, or "" at EOF, within timeout or ctx.
func readStatus(ctx context.Context, r *os.File, timeout time.Duration) (string, error) {
	if err := r.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { _ = r.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := bufio.NewReader(r).ReadString('\n')
	switch {
	case err == nil:
		return strings.TrimSuffix(line, "\n"), nil
	case errors.Is(err, io.EOF):
		if line != "" {
			return line, nil
		}
		return "", nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", fmt.Errorf("no answer within %v", timeout)
	default:
		return "", err
	}
}

// ptyStdin writes to a pty master; closing it does nothing, as the master
// is also stdout (see Service.CloseStdin).
type ptyStdin struct{ *os.File }

func (ptyStdin) Close() error { return nil }

// ptmxFor picks the ptmx to open: the container's own devpts when Setup
// mounted one, so that the process finds its terminal in /dev/pts, else the
// agent's.
func ptmxFor(rootfs string) string {
	candidates := []string{"/dev/pts/ptmx", "/dev/ptmx"}
	if rootfs != "" {
		candidates = append([]string{filepath.Join(rootfs, "dev/pts/ptmx")}, candidates...)
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/dev/ptmx"
}

// openPty opens a new pty pair from ptmx: the master (pollable) and the
// slave (for the process).
func openPty(ptmx string) (master, slave *os.File, err error) {
	master, err = os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %q: %w", ptmx, err)
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var slaveFd int
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		// unlockpt
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr != nil {
			ioctlErr = fmt.Errorf("unlockpt: %w", ioctlErr)
			return
		}
		// The slave without a path lookup (Linux 4.13+).
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno != 0 {
			ioctlErr = fmt.Errorf("TIOCGPTPEER: %w", errno)
			return
		}
		slaveFd = int(r)
	}); err != nil {
		return nil, nil, err
	}
	if ioctlErr != nil {
		return nil, nil, fmt.Errorf("opening the pty slave of %q: %w", ptmx, ioctlErr)
	}
	return master, os.NewFile(uintptr(slaveFd), "pty-slave"), nil
}

// resizePty sets the window size of a pty through its master.
func resizePty(master *os.File, width, height uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
	}); err != nil {
		return err
	}
	if ioctlErr != nil {
		return fmt.Errorf("TIOCSWINSZ %dx%d: %w", width, height, ioctlErr)
	}
	return nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		ok = err == nil
	})
	return ok
}

// namespaceKind is a namespace a container's processes may get of their
// own or join: its clone flag and its /proc/<pid>/ns name.
type namespaceKind struct {
	flag uintptr
	file string
}

// namespaceKinds are those namespaces by their runtime-spec name.
var namespaceKinds = map[string]namespaceKind{
	"pid":    {syscall.CLONE_NEWPID, "pid"},
	"uts":    {syscall.CLONE_NEWUTS, "uts"},
	"ipc":    {syscall.CLONE_NEWIPC, "ipc"},
	"mount":  {syscall.CLONE_NEWNS, "mnt"},
	"cgroup": {syscall.CLONE_NEWCGROUP, "cgroup"},
}

// namespaceOf looks up namespace name.
func namespaceOf(name string) (namespaceKind, error) {
	k, ok := namespaceKinds[name]
	if !ok {
		return k, errorf(ErrInvalidArgument, "namespace %q: want pid, uts, ipc, mount or cgroup", name)
	}
	return k, nil
}

// cloneFlags are the clone flags of namespaces.
func cloneFlags(namespaces []string) (uintptr, error) {
	var flags uintptr
	for _, ns := range namespaces {
		k, err := namespaceOf(ns)
		if err != nil {
			return 0, err
		}
		flags |= k.flag
	}
	return flags, nil
}

// forkExecInNamespaces starts a process in the namespaces of pid, in the
// order given (the PID namespace last: it applies to children only): on a
// thread of its own that joins them and is never reused (locked, it exits
// with its goroutine). Every namespace is opened before the first is
// joined: after the mount namespace, /proc is the container's.
func forkExecInNamespaces(pid int, namespaces []string, exe string, args []string, attr *syscall.ProcAttr) (int, error) {
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		kinds := make([]namespaceKind, len(namespaces))
		fds := make([]*os.File, len(namespaces))
		defer func() {
			for _, f := range fds {
				if f != nil {
					f.Close()
				}
			}
		}()
		for i, name := range namespaces {
			k, err := namespaceOf(name)
			if err != nil {
				done <- result{0, err}
				return
			}
			kinds[i] = k
			f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, k.file))
			if err != nil {
				done <- result{0, fmt.Errorf("opening the %s namespace of pid %d: %w", name, pid, err)}
				return
			}
			fds[i] = f
		}
		for i, name := range namespaces {
			if name == "mount" {
				// setns(2): joining a mount namespace needs a
				// filesystem context of the thread's own.
				if err := unix.Unshare(unix.CLONE_FS); err != nil {
					done <- result{0, fmt.Errorf("unsharing the thread's filesystem context: %w", err)}
					return
				}
			}
			if err := unix.Setns(int(fds[i].Fd()), int(kinds[i].flag)); err != nil {
				done <- result{0, fmt.Errorf("joining the %s namespace of pid %d: %w", name, pid, err)}
				return
			}
		}
		child, err := syscall.ForkExec(exe, args, attr)
		done <- result{child, err}
	}()
	r := <-done
	return r.pid, r.err
}

// joinCgroup writes pid into procs, the container's cgroup.procs. When the
// container manages its cgroups itself (systemd enabled controllers below
// its cgroup, which then may hold no process: EBUSY), pid joins the
// cgroup of the container's process main instead, as runc's exec does.
func joinCgroup(procs string, pid, main int) error {
	err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0)
	if !errors.Is(err, unix.EBUSY) || main <= 0 {
		return err
	}
	data, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", main))
	if rerr != nil {
		return errors.Join(err, rerr)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			dir := filepath.Join(cgroupRoot, filepath.Clean("/"+path))
			return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		}
	}
	return err
}
