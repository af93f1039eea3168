package guestagent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// PID 1 handed off (initos.pid1=handoff; the engines' switch-root mode,
// docs/architecture.md "Switch-root"). The seed: "The user OS can be
// executed using switch-root". The container's first process must be PID 1
// of the VM, while exec, signals, stdio and the exit status keep working.
// The agent cannot stay PID 1 and give PID 1 away, so:
//
//   - PID 1 (/init) mounts the basics, re-roots, and starts the serving
//     agent as its child (argv[0] agentArg0, a subreaper: what it starts
//     stays its own). PID 1 then waits on a socket.
//   - When the agent launches the container's first process, it sends PID 1
//     that process's descriptors (stdio, and the helper's configuration,
//     start and status pipes) and the namespaces to make. PID 1 unshares
//     them and execs the process helper (package procinit), which prepares
//     the process and execs it as before: PID 1 stays PID 1 throughout.
//   - PID 1 has no parent to wait for it, and when it exits the kernel
//     panics at once, losing what is still in its pipes. A watcher process
//     (argv[0] watcherArg0) traces PID 1 with PTRACE_O_TRACEEXIT: its exit
//     stops it before the panic, the watcher reports the status, and the
//     agent drains the output, reports the exit and powers the VM off at
//     Shutdown with PID 1 still stopped.
//   - The kernel drops SIGKILL to PID 1 ("SIGKILL and SIGSTOP may not be
//     sent to the global init"): a kill stops PID 1 for good instead (the
//     watcher lets a SIGSTOP through), which reads as a SIGKILL death.
//
// Both helpers' argv[0] begins with '@': systemd's final killing spree
// spares such processes (https://systemd.io/ROOT_STORAGE_DAEMONS), so the
// agent outlives a systemd shutdown.

const (
	// agentArg0 is argv[0] of the serving agent under a handed-off PID 1.
	agentArg0 = "@initos-agent"
	// watcherArg0 is argv[0] of the process that traces PID 1.
	watcherArg0 = "@initos-pid1"
	// handoffFd is the agent's end of its socket to PID 1.
	handoffFd = 3
)

// isHandoffAgent reports whether this process is the serving agent under a
// handed-off PID 1.
func isHandoffAgent() bool { return len(os.Args) > 0 && os.Args[0] == agentArg0 }

// isWatcher reports whether this process is PID 1's watcher.
func isWatcher() bool { return len(os.Args) > 0 && os.Args[0] == watcherArg0 }

// handoffMsg is what PID 1 receives with the descriptors.
type handoffMsg struct {
	// Unshare are the clone flags of the namespaces PID 1 makes before it
	// execs the helper (mount, UTS, IPC: never PID, it is the VM's).
	Unshare uintptr `json:"unshare"`
}

// startServingAgent is PID 1's part before the handoff: it starts the
// serving agent with the console as its stdio and the socket as fd 3, and
// powers off if the agent ends (without it nothing serves the host).
func (a *agent) startServingAgent() (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the handoff socket: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "handoff"), os.NewFile(uintptr(fds[1]), "handoff-agent")
	defer theirs.Close()
	con := a.console.Fd()
	attr := &syscall.ProcAttr{Env: []string{}, Files: []uintptr{con, con, con, theirs.Fd()}}
	_, err = a.reaper.Start(func() (int, error) {
		return syscall.ForkExec("/proc/self/exe", []string{agentArg0}, attr)
	}, func(e exitInfo) {
		a.powerOff(fmt.Sprintf("the agent ended with status %d", e.Status))
	})
	if err != nil {
		mine.Close()
		return nil, fmt.Errorf("starting the serving agent: %w", err)
	}
	return mine, nil
}

// awaitHandoff is PID 1's life after startServingAgent: it waits for the
// container's first process and becomes it (through the helper). It
// returns only on failure.
func (a *agent) awaitHandoff(sock *os.File) error {
	msg, files, err := recvHandoff(sock)
	if err != nil {
		return err
	}
	a.log.Debugf("handoff: PID 1 becomes the container's first process")
	// Above the descriptors of Go's runtime, which the exec keeps apart
	// from: replacing its epoll descriptor kills this process. The helper
	// moves the stdio ones to 0-2 (procinit.HandoffFds).
	high := make([]string, len(files))
	for i, fd := range files {
		h, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD, procinit.HandoffFdBase)
		if err != nil {
			return fmt.Errorf("handoff: moving fd %d: %w", fd, err)
		}
		high[i] = strconv.Itoa(h)
	}
	// On the main thread (init): the namespaces it makes are the
	// thread's, and the exec from it keeps PID 1's traced thread.
	if msg.Unshare != 0 {
		if err := unix.Unshare(int(msg.Unshare)); err != nil {
			return fmt.Errorf("handoff: unsharing namespaces %#x: %w", msg.Unshare, err)
		}
	}
	// asyncpreemptoff: each of the Go runtime's preemption signals to the
	// traced thread is a stop for the watcher to handle.
	env := []string{procinit.HandoffFdsEnv + "=" + strings.Join(high, ","), "GODEBUG=asyncpreemptoff=1"}
	a.reaper.Stop()
	err = unix.Exec(procinit.Path, []string{procinit.Arg0}, env)
	return fmt.Errorf("handoff: exec of the process helper: %w", err)
}

// recvHandoff reads one handoff: the message and its descriptors.
func recvHandoff(sock *os.File) (handoffMsg, []int, error) {
	var msg handoffMsg
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(procinit.HandoffFiles*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return msg, nil, fmt.Errorf("handoff: receiving: %w", err)
		}
		if n == 0 {
			return msg, nil, errors.New("handoff: the agent closed its socket")
		}
		files, err := parseRights(oob[:oobn])
		if err != nil {
			return msg, nil, err
		}
		if len(files) != procinit.HandoffFiles {
			closeFds(files)
			return msg, nil, fmt.Errorf("handoff: got %d descriptors, want %d", len(files), procinit.HandoffFiles)
		}
		if err := json.Unmarshal(buf[:n], &msg); err != nil {
			closeFds(files)
			return msg, nil, fmt.Errorf("handoff: decoding %q: %w", buf[:n], err)
		}
		return msg, files, nil
	}
}

// parseRights returns the descriptors of SCM_RIGHTS messages.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handoff: parsing control messages: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			closeFds(fds)
			return nil, fmt.Errorf("handoff: parsing SCM_RIGHTS: %w", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// sendHandoff gives PID 1 the process's descriptors, in the helper's order.
func sendHandoff(sock *os.File, msg handoffMsg, files []uintptr) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f)
	}
	if err := unix.Sendmsg(int(sock.Fd()), data, unix.UnixRights(fds...), nil, 0); err != nil {
		return fmt.Errorf("handing the process to PID 1: %w", err)
	}
	return nil
}

// pid1 is the serving agent's side of a handed-off PID 1: the socket to
// it and its watcher. Only the default container's first process becomes
// PID 1; one handoff per boot.
type pid1 struct {
	sock   *os.File
	reaper *reaper
	log    *logger
	// exe is the agent's binary, run again as the watcher.
	exe string
	// attachTimeout bounds the wait for the watcher to trace PID 1.
	attachTimeout time.Duration
	// drain is how long an exit waits for the process's output to be
	// read while nothing more is read from it.
	drain time.Duration

	mu      sync.Mutex
	used    bool
	watcher int            // its pid, 0 before the handoff
	control io.WriteCloser // the watcher's stdin: "freeze"
	frozen  bool
	// onExit runs once PID 1's exit is known, before its output is
	// drained: the Service ends what else runs, as the end of a PID
	// namespace does.
	onExit func()
}

func newPid1(sock *os.File, r *reaper, log *logger) *pid1 {
	return &pid1{sock: sock, reaper: r, log: log, exe: "/proc/self/exe", attachTimeout: 10 * time.Second, drain: 5 * time.Second}
}

// claim takes the single handoff; false when it was taken.
func (h *pid1) claim() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.used {
		return false
	}
	h.used = true
	return true
}

// isWatcherPid reports whether pid is the watcher (hidden from the
// container's processes and spared by Shutdown).
func (h *pid1) isWatcherPid(pid int) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watcher != 0 && pid == h.watcher
}

// freeze stops PID 1 for good: its SIGKILL. The watcher reports it as a
// death by SIGKILL once PID 1 has stopped.
func (h *pid1) freeze() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.control == nil || h.frozen {
		return nil
	}
	h.frozen = true
	if _, err := io.WriteString(h.control, "freeze\n"); err != nil {
		return fmt.Errorf("asking PID 1's watcher to stop it: %w", err)
	}
	return nil
}

// spawn hands the process to PID 1 (helperLauncher's spawn): it starts
// the watcher, waits until it traces PID 1, then sends the descriptors.
// The exit comes from the watcher, once the output is drained.
func (h *pid1) spawn(_ launchRequest, files []uintptr, flags uintptr, outputs []*os.File) (int, <-chan exitInfo, error) {
	// PID 1 of the VM, so never a new PID namespace.
	flags &^= unix.CLONE_NEWPID
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return 0, nil, fmt.Errorf("creating a pipe: %w", err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return 0, nil, fmt.Errorf("creating a pipe: %w", err)
	}
	attr := &syscall.ProcAttr{Env: []string{}, Files: []uintptr{ctlR.Fd(), repW.Fd(), 2}}
	watcherDone := make(chan exitInfo, 1)
	pid, err := h.reaper.Start(func() (int, error) {
		return syscall.ForkExec(h.exe, []string{watcherArg0}, attr)
	}, func(e exitInfo) { watcherDone <- e })
	ctlR.Close()
	repW.Close()
	if err != nil {
		ctlW.Close()
		repR.Close()
		return 0, nil, fmt.Errorf("starting PID 1's watcher: %w", err)
	}
	fail := func(err error) (int, <-chan exitInfo, error) {
		_ = unix.Kill(pid, unix.SIGKILL) // the reaper collects it
		ctlW.Close()
		repR.Close()
		return 0, nil, err
	}
	line, err := readStatus(context.Background(), repR, h.attachTimeout)
	switch {
	case err != nil:
		return fail(fmt.Errorf("waiting for PID 1's watcher (pid %d): %w", pid, err))
	case line != watcherAttached:
		return fail(fmt.Errorf("PID 1's watcher (pid %d) said %q", pid, line))
	}
	// The attach's deadline must not bound the wait for the exit.
	if err := repR.SetReadDeadline(time.Time{}); err != nil {
		return fail(fmt.Errorf("PID 1's watcher's report pipe: %w", err))
	}
	h.mu.Lock()
	h.watcher, h.control = pid, ctlW
	h.mu.Unlock()
	if err := sendHandoff(h.sock, handoffMsg{Unshare: flags}, files); err != nil {
		return fail(err)
	}
	exited := make(chan exitInfo, 1)
	go func() {
		status, err := readExitReport(repR)
		if err != nil {
			// The watcher is gone: PID 1 is no longer traced, and its
			// exit would take the VM with it.
			h.log.Printf("PID 1's watcher: %v", err)
			<-watcherDone
			return
		}
		at := time.Now()
		if h.onExit != nil {
			h.onExit()
		}
		drainOutputs(outputs, h.drain)
		exited <- exitInfo{Status: status, At: at}
	}()
	return 1, exited, nil
}

// watcherAttached is the watcher's first line once it traces PID 1.
const watcherAttached = "attached"

// readExitReport reads the watcher's "exit STATUS" line: STATUS is the
// wait status PTRACE_GETEVENTMSG gave at PID 1's exit.
func readExitReport(r io.Reader) (int32, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reading its report: %w", err)
	}
	word, value, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok || word != "exit" {
		return 0, fmt.Errorf("unexpected report %q", line)
	}
	ws, err := strconv.ParseUint(value, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("unexpected report %q: %w", line, err)
	}
	return exitStatus(unix.WaitStatus(ws)), nil
}

// drainOutputs waits until the agent has read what a stopped PID 1 left
// in its output pipes, then closes them: PID 1 holds the other ends until
// the VM ends, so no EOF would come. It gives up after quiet without
// progress (the host is not reading).
func drainOutputs(outputs []*os.File, quiet time.Duration) {
	last, since := -1, time.Now()
	for {
		pending := 0
		for _, f := range outputs {
			pending += unread(f)
		}
		if pending == 0 || time.Since(since) > quiet {
			break
		}
		if pending != last {
			last, since = pending, time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, f := range outputs {
		_ = f.Close()
	}
}

// unread is how many bytes wait in pipe or pty f (0 when unknown). Not
// through f.Fd(), which would make f blocking under its reader.
func unread(f *os.File) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		// TIOCINQ is FIONREAD: bytes waiting in a pipe or a pty.
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

func init() {
	// The main goroutine keeps the startup thread, and no other goroutine
	// runs on it. PID 1 execs from its main thread (as the process helper
	// does, see procinit): namespaces made for the exec are that thread's,
	// and an exec from another thread would end the traced main thread of
	// a handed-off PID 1 (its watcher would read that as PID 1's exit).
	// And forkExecInNamespaces leaves its thread in a container's
	// namespaces, locked so that Go ends it: Go cannot end the main thread
	// and would park it there, where /proc/self (the agent's mountinfo,
	// its namespaces) would show the container's.
	goruntime.LockOSThread()
}

// setPID1 makes the default container's first process PID 1 of the VM:
// it runs in the VM's PID namespace (it is the machine), and its end ends
// the rest as the end of a PID namespace's init does.
func (s *Service) setPID1(h *pid1) {
	s.pid1 = h
	h.onExit = func() {
		if err := s.signalAll(nil, unix.SIGKILL); err != nil {
			s.log.Printf("after PID 1's exit: %v", err)
		}
	}
}

// isPID1 reports whether p is the handed-off PID 1.
func (s *Service) isPID1(p *process) bool { return s.pid1 != nil && p.pid == 1 }

// kill sends sig to pid; to a handed-off PID 1, SIGKILL freezes it (the
// kernel would drop it).
func (s *Service) kill(pid int, sig unix.Signal) error {
	if pid == 1 && s.pid1 != nil && sig == unix.SIGKILL {
		return s.pid1.freeze()
	}
	return s.sys.Kill(pid, sig)
}
