package guestagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// A template's agent starts one spare process helper before the template
// is saved (Cmdline.Template): every clone then starts its container's
// first process through a helper whose Go runtime is already up, instead of
// starting one under its own clock, where TCG translates all of that start
// afresh (150-240 ms of a clone's start, measured). The spare is used at
// most once, by the first process launched: when that process fits it, it
// gets the process's descriptors over a socket (procinit.SpareFds);
// otherwise it is told to exit and the process gets a helper of its own.

// spareFlags are the namespaces a spare is started in: those of a
// container's first process with namespaces of its own (podman's, the
// CLI's, a CRI sandbox's). Its mount namespace it makes itself once used
// (procinit.Config.UnshareMount): one made now would lack the container's
// mounts, which Setup makes later.
const spareFlags = syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC

// spareWait bounds a template's wait for its spare: under TCG it starts
// in 100-250 ms.
const spareWait = 10 * time.Second

// spareStarter is a launcher that starts a spare (helperLauncher).
type spareStarter interface {
	StartSpare(wait time.Duration, cgroupDir string) error
}

// spareHelper is a started spare: its pid, its exit, the agent's end of
// its socket, and the cgroup.procs of the cgroup it started in ("": the
// agent's).
type spareHelper struct {
	pid    int
	exited <-chan exitInfo
	sock   int
	procs  string
}

// spareSlot holds a launcher's spare until the first launch takes it.
type spareSlot struct {
	mu    sync.Mutex
	spare *spareHelper
	taken bool
}

// take returns the spare, if any, and empties the slot for good.
func (s *spareSlot) take() *spareHelper {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.spare
	s.spare, s.taken = nil, true
	return sp
}

// fits reports whether a process that joins the namespaces of joinOf (0:
// none) and needs the namespaces flags can start in the spare.
func (sp *spareHelper) fits(joinOf int, flags uintptr) bool {
	return joinOf == 0 && flags&^syscall.CLONE_NEWNS == spareFlags
}

// hand sends the spare its descriptors (the helper's 0-5) and closes the
// agent's end of its socket.
func (sp *spareHelper) hand(files []uintptr) error {
	defer unix.Close(sp.sock)
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f)
	}
	if err := unix.Sendmsg(sp.sock, []byte{1}, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL); err != nil {
		_ = unix.Kill(sp.pid, unix.SIGKILL) // the reaper collects it
		return fmt.Errorf("handing the spare process helper (pid %d) its descriptors: %w", sp.pid, err)
	}
	return nil
}

// discard tells the spare to exit: it reads the socket's end.
func (sp *spareHelper) discard() { _ = unix.Close(sp.sock) }

// StartSpare starts the launcher's spare helper and returns once it waits
// for its descriptors (its Go runtime is up), within wait. A launcher
// whose first launch already happened starts none. With cgroupDir set (the
// cgroup the first process will live in) the spare starts there (clone3's
// CLONE_INTO_CGROUP), so that the process it becomes is not moved into
// its cgroup in each clone (30-56 ms of a clone's start under TCG,
// measured); a kernel that refuses that starts it in the agent's cgroup,
// and Launch moves it.
func (l *helperLauncher) StartSpare(wait time.Duration, cgroupDir string) (err error) {
	l.spare.mu.Lock()
	defer l.spare.mu.Unlock()
	if l.spare.taken || l.spare.spare != nil {
		return nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("creating the spare process helper's socket: %w", err)
	}
	agentEnd, childEnd := pair[0], pair[1]
	defer unix.Close(childEnd)
	null, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		unix.Close(agentEnd)
		return fmt.Errorf("opening /dev/null for the spare process helper: %w", err)
	}
	defer null.Close()
	const childSock = 3
	exited := make(chan exitInfo, 1)
	start := func(cgroupFd int) (int, error) {
		attr := &syscall.ProcAttr{
			Env:   []string{fmt.Sprintf("%s=%d", procinit.SpareFdEnv, childSock)},
			Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), uintptr(childEnd)},
			Sys:   &syscall.SysProcAttr{Cloneflags: spareFlags},
		}
		if cgroupFd >= 0 {
			attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, cgroupFd
		}
		return l.reaper.Start(func() (int, error) {
			return syscall.ForkExec(l.exe, []string{procinit.Arg0}, attr)
		}, func(e exitInfo) { exited <- e })
	}
	procs := ""
	pid := 0
	if cgroupDir != "" {
		fd, oerr := unix.Open(cgroupDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if oerr != nil {
			unix.Close(agentEnd)
			return fmt.Errorf("opening the cgroup %s for the spare process helper: %w", cgroupDir, oerr)
		}
		pid, err = start(fd)
		unix.Close(fd)
		switch {
		case err == nil:
			procs = filepath.Join(cgroupDir, "cgroup.procs")
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			// As spawnInCgroup: Launch moves it.
			err = nil
		}
	}
	if pid == 0 && err == nil {
		pid, err = start(-1)
	}
	if err != nil {
		unix.Close(agentEnd)
		return fmt.Errorf("starting a spare process helper %q: %w", l.exe, err)
	}
	defer func() {
		if err != nil {
			unix.Close(agentEnd)
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}()
	if err := waitSpare(agentEnd, wait); err != nil {
		return fmt.Errorf("waiting for the spare process helper (pid %d): %w", pid, err)
	}
	l.spare.spare = &spareHelper{pid: pid, exited: exited, sock: agentEnd, procs: procs}
	return nil
}

// waitSpare reads the spare's procinit.SpareWaiting from sock.
func waitSpare(sock int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not waiting after %s", wait)
		}
		fds := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) || err == nil && n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("polling its socket: %w", err)
		}
		var b [1]byte
		n, err = unix.Read(sock, b[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("reading its socket: %w", err)
		case n == 0:
			return errors.New("it exited before it was waiting")
		case b[0] != procinit.SpareWaiting:
			return fmt.Errorf("it said %q", b[:])
		}
		return nil
	}
}
