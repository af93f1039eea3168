package vmm

import (
	"golang.org/x/sys/unix"

	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killWait bounds the wait for a SIGKILLed process group to be reaped.
const killWait = 10 * time.Second

// Process is a child a driver started: the VMM or a helper (virtiofsd).
// It runs in its own process group, gets SIGKILL when the thread that
// started it dies, and its stdout and stderr go to a log file.
type Process struct {
	name    string
	logPath string
	pid     int
	done    chan struct{}
	err     error // cmd.Wait's result, set before done is closed
}

// StartProcess starts bin with args as described at Process; logPath is
// truncated first.
func StartProcess(name, bin string, args []string, logPath string) (*Process, error) {
	return StartProcessIn("", name, bin, args, logPath, nil)
}

// StartProcessIn is StartProcess with the child in the network namespace
// at netnsPath ("" for the caller's): the forking thread joins it, and
// being locked and then retired with the child, never serves other
// goroutines from there. The child gets extra as its descriptors 3, 4, ...
func StartProcessIn(netnsPath, name, bin string, args []string, logPath string, extra []*os.File) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	p := &Process{name: name, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking *thread* exits, and Go retires
		// threads whose goroutine exits while locked. So fork from a locked
		// thread and keep it locked until the child is reaped: the thread
		// then outlives the child, and is retired only after it.
		runtime.LockOSThread()
		if netnsPath != "" {
			if err := joinNetns(netnsPath); err != nil {
				started <- err
				return // the goroutine exits locked: the thread is retired
			}
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s %q: %w", name, bin, err)
	}
	return p, nil
}

// Pid is the process id (and process group id).
func (p *Process) Pid() int { return p.pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the process exited and returns cmd.Wait's result:
// nil for exit status 0, else an *exec.ExitError.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// ExitError describes how the process ended, with the last lines of its
// log; call it after Done is closed.
func (p *Process) ExitError() error {
	status := p.ExitStatus()
	if tail := p.LogTail(10); tail != "" {
		return fmt.Errorf("%s (pid %d) exited: %s; last lines of %s:\n%s", p.name, p.pid, status, p.logPath, tail)
	}
	return fmt.Errorf("%s (pid %d) exited: %s", p.name, p.pid, status)
}

// ExitStatus is how the process ended ("exit status 0", "signal:
// killed"); call it after Done is closed.
func (p *Process) ExitStatus() string {
	if p.err != nil {
		return p.err.Error()
	}
	return "exit status 0"
}

// LogTail returns the last n lines of the process's log.
func (p *Process) LogTail(n int) string { return ConsoleTail(p.logPath, n) }

// Signal sends sig to the process group; a group that is gone is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %v to %s (pid %d): %w", sig, p.name, p.pid, err)
	}
	return nil
}

// Kill SIGKILLs the process group and waits (bounded) until it is reaped.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) still running %s after SIGKILL", p.name, p.pid, killWait)
	}
}

// Terminate sends sig, waits for the exit until ctx is done, then kills.
func (p *Process) Terminate(ctx context.Context, sig syscall.Signal) error {
	if err := p.Signal(sig); err != nil {
		return errors.Join(err, p.Kill())
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return p.Kill()
	}
}

// ListenSocket makes a Unix socket listening at path and returns it as a
// file to hand to a child process; closing the file leaves path.
func ListenSocket(path string) (*os.File, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %q: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("listening on %q: %w", path, err)
	}
	return f, nil
}

// RestrictSockets makes the sockets at paths that exist readable and
// writable by their owner only (0600): a VMM or virtiofsd creates its
// sockets with its umask, and only the runtime (root) talks to them. The
// state directory is 0700 as well.
func RestrictSockets(paths ...string) error {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("restricting socket %q: %w", p, err)
		}
		if fi.Mode()&fs.ModeSocket == 0 {
			return fmt.Errorf("restricting socket %q: it is not a socket", p)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return fmt.Errorf("restricting socket %q: %w", p, err)
		}
	}
	return nil
}

// ClaimSocket makes path free for a new listener: a stale socket file is
// removed, one that accepts connections means another VMM uses the state
// dir (ErrStateDirInUse). Anything else at path is left alone and reported.
func ClaimSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking socket %q: %w", path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%q exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("%w: %q accepts connections", ErrStateDirInUse, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale socket %q: %w", path, err)
	}
	return nil
}

// RemoveSockets removes the socket files at paths; missing ones are fine.
func RemoveSockets(paths ...string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing socket %q: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// joinNetns moves the calling (locked) thread into a network namespace.
func joinNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %q: %w", path, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("joining network namespace %q: %w", path, err)
	}
	return nil
}

// SetOOMScoreAdj sets the host OOM killer's adjustment (-1000..1000) of
// process pid and of its descendants: pid's first, then those of the
// children it has by then, whose own children follow (a process forked
// after its parent's write inherits the new value, as one forked before
// is listed). A process that has gone is skipped: nothing of it is left
// to kill. Lowering a value below the process's floor needs
// CAP_SYS_RESOURCE; without it the kernel refuses (EACCES), as it refuses
// runc's init.
func SetOOMScoreAdj(pid, adj int) error {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	if err := os.WriteFile(filepath.Join(dir, "oom_score_adj"), []byte(strconv.Itoa(adj)), 0); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("setting the oom_score_adj of pid %d to %d: %w", pid, adj, err)
	}
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return nil // gone since
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, "task", task.Name(), "children"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			child, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if err := SetOOMScoreAdj(child, adj); err != nil {
				return err
			}
		}
	}
	return nil
}
