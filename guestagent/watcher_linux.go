package guestagent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// runWatcher is the life of PID 1's watcher (handoff_linux.go): it traces
// PID 1 until PID 1 exits or is frozen, reports that on stdout as "exit
// STATUS", and leaves it stopped until the VM powers off. stdin carries
// the agent's "freeze" requests; its end (the agent is gone) ends the
// watcher, which lets PID 1 go.
func runWatcher() int {
	// ptrace(2): requests come from the thread that attached.
	goruntime.LockOSThread()
	var w pid1Watcher
	w.out = os.Stdout
	if err := seizeExit(1); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", watcherArg0, err)
		return 1
	}
	if _, err := fmt.Fprintln(w.out, watcherAttached); err != nil {
		return 1 // the agent is gone
	}
	go func() {
		w.control(os.Stdin, ptraceOps{})
		os.Exit(0) // a tracer's exit detaches it
	}()
	if err := w.loop(ptraceOps{}); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", watcherArg0, err)
		return 1
	}
	return 0
}

// tracer is the watcher's view of ptrace, so that its decisions are
// tested without tracing anything.
type tracer interface {
	wait() (unix.WaitStatus, error)
	cont(sig unix.Signal) error
	eventMsg() (uint, error)
	kill(sig unix.Signal) error
}

// ptraceOps traces PID 1 for real.
type ptraceOps struct{}

func (ptraceOps) wait() (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(1, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return ws, err
	}
}
func (ptraceOps) cont(sig unix.Signal) error { return unix.PtraceCont(1, int(sig)) }
func (ptraceOps) eventMsg() (uint, error)    { return unix.PtraceGetEventMsg(1) }
func (ptraceOps) kill(sig unix.Signal) error { return unix.Kill(1, sig) }

// seizeExit traces pid with PTRACE_O_TRACEEXIT, without stopping it.
func seizeExit(pid int) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, unix.PTRACE_O_TRACEEXIT, 0, 0)
	if errno != 0 {
		return fmt.Errorf("tracing pid %d: %w", pid, errno)
	}
	return nil
}

// pid1Watcher decides what each stop of PID 1 means.
type pid1Watcher struct {
	out    io.Writer
	frozen atomic.Bool

	mu       sync.Mutex
	reported bool
	status   uint
}

// control reads "freeze" lines until r ends.
func (w *pid1Watcher) control(r io.Reader, t tracer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if sc.Text() == "freeze" {
			w.frozen.Store(true)
			_ = t.kill(unix.SIGSTOP)
		}
	}
}

// report writes PID 1's end once.
func (w *pid1Watcher) report(ws uint) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reported {
		return nil
	}
	w.reported, w.status = true, ws
	_, err := fmt.Fprintf(w.out, "exit %d\n", ws)
	return err
}

// loop handles PID 1's stops until it can no longer be waited for:
//   - the exit stop (PTRACE_EVENT_EXIT, before the kernel's panic): report
//     the status and never let it go on;
//   - a signal-delivery stop: pass the signal on, as if untraced (the
//     kernel then drops what init does not handle). SIGSTOP, which the
//     kernel would not have let through to init, passes only to freeze;
//   - a group stop (under PTRACE_SEIZE, PTRACE_EVENT_STOP with the stop
//     signal): a freeze is reported as a SIGKILL death and kept; any other
//     is undone. PTRACE_EVENT_STOP with SIGTRAP is a notification, and
//     PID 1 just goes on.
func (w *pid1Watcher) loop(t tracer) error {
	for {
		ws, err := t.wait()
		if err != nil {
			return fmt.Errorf("waiting for PID 1: %w", err)
		}
		if ws.Exited() || ws.Signaled() {
			// Only after a detach: the VM is going.
			return w.report(uint(ws))
		}
		if !ws.Stopped() {
			continue
		}
		sig := ws.StopSignal()
		event := int(ws) >> 16

		switch {
		case sig == unix.SIGTRAP && event == unix.PTRACE_EVENT_EXIT:
			msg, err := t.eventMsg()
			if err != nil {
				return fmt.Errorf("reading PID 1's exit status: %w", err)
			}
			if err := w.report(msg); err != nil {
				return err
			}
		case event == unix.PTRACE_EVENT_STOP && sig == unix.SIGTRAP:
			// A notification (under PTRACE_SEIZE a SIGCONT or a job
			// control change traps the tracee once), not a stop of its
			// own: answering it with SIGCONT would trap it again.
			if err := t.cont(0); err != nil {
				return fmt.Errorf("resuming PID 1: %w", err)
			}
		case event == unix.PTRACE_EVENT_STOP:
			if w.frozen.Load() {
				if err := w.report(uint(unix.SIGKILL)); err != nil {
					return err
				}
				continue
			}
			_ = t.kill(unix.SIGCONT)
			if err := t.cont(0); err != nil {
				return fmt.Errorf("resuming PID 1: %w", err)
			}
		case sig == unix.SIGSTOP && event == 0:
			pass := unix.Signal(0)
			if w.frozen.Load() {
				pass = unix.SIGSTOP
			}
			if err := t.cont(pass); err != nil {
				return fmt.Errorf("resuming PID 1: %w", err)
			}
		default:
			pass := sig
			if event != 0 {
				pass = 0 // another ptrace event: nothing to deliver
			}
			if err := t.cont(pass); err != nil {
				return fmt.Errorf("resuming PID 1 with signal %d: %w", pass, err)
			}
		}
	}
}
