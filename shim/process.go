package shim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/grpc/codes"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// taskProcess is a task's process as containerd sees it: the container's
// init (execID "") or an exec.
type taskProcess struct {
	containerID string
	execID      string
	pid         uint32 // what containerd is told (the VMM's for init)
	gp          guestProcess
	stdio       stdioPaths
	io          *processIO

	// mu orders the start event before the exit event and guards the
	// fields below.
	mu         sync.Mutex
	started    bool
	exitStatus int
	exitedAt   time.Time
	// ended is closed once the process has ended in the guest; its exit
	// is reported (exited) after its output is drained (run).
	ended  chan struct{}
	exited chan struct{} // closed once the exit is recorded
	ioDone chan struct{} // closed once the output is drained and stdio closed
}

func newTaskProcess(containerID, execID string, pid uint32, gp guestProcess, paths stdioPaths, pio *processIO) *taskProcess {
	return &taskProcess{containerID: containerID, execID: execID, pid: pid, gp: gp, stdio: paths, io: pio,
		ended: make(chan struct{}), exited: make(chan struct{}), ioDone: make(chan struct{})}
}

// name is how errors name the process.
func (p *taskProcess) name() string {
	if p.execID == "" {
		return fmt.Sprintf("task %q", p.containerID)
	}
	return fmt.Sprintf("exec %q of task %q", p.execID, p.containerID)
}

// hasExited reports whether the exit is recorded.
func (p *taskProcess) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// status is the process's containerd status; paused applies to a live
// process of a paused VM.
func (p *taskProcess) status(paused bool) task.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.hasEnded():
		return task.Status_STOPPED
	case paused:
		return task.Status_PAUSED
	case p.started:
		return task.Status_RUNNING
	}
	return task.Status_CREATED
}

// start lets the process run and sends the start event (under mu, so the
// exit event cannot overtake it).
func (p *taskProcess) start(ctx context.Context, send func(any)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hasExited() {
		return fmt.Errorf("%s has exited: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if p.started {
		return fmt.Errorf("%s is already started: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if err := p.gp.Start(ctx); err != nil {
		return err
	}
	p.started = true
	send(startEvent(p))
	return nil
}

// run relays stdio and waits for the exit; beforeExit runs between the
// exit and its event (init: end the execs first). The output is drained
// and the stdio closed before the exit is reported: clients (nerdctl's and
// ctr's) close their ends of the fifos as soon as they see the exit, and
// what reached the guest's buffers but not yet the fifos would be lost.
// Under runc the same copy is local and done by then; here it crosses the
// VM. The drain ends at end of file or after drainGrace of silence (a
// background child may hold the output open), so the exit is never held
// long. Delete waits for ioDone too.
func (p *taskProcess) run(ctx context.Context, beforeExit func(), send func(any)) {
	progress := make(chan struct{}, 1)
	pumped := make(chan error, 1)
	go func() { pumped <- p.gp.Pump(ctx, p.io.stdio(), progress) }()
	status, err := p.gp.Wait(ctx)
	if err != nil {
		// A VM that ended under the process (its VMM killed or crashed)
		// killed it: 137, as for any process killed by SIGKILL. Any other
		// lost wait is reported the same way: the process is gone.
		log.G(ctx).WithError(err).Warnf("%s: lost the guest process", p.name())
		status = 128 + int(syscall.SIGKILL)
	}
	// Stopped from here on (State, Kill, Delete), as in runc's shim once
	// its reaper has seen the exit; the event follows the output.
	p.mu.Lock()
	p.exitStatus, p.exitedAt = status, time.Now()
	p.mu.Unlock()
	close(p.ended)
	if beforeExit != nil {
		beforeExit()
	}
	if err == nil {
		if err := runtime.Drain(pumped, progress); err != nil {
			log.G(ctx).WithError(err).Warnf("%s: output", p.name())
		}
	}
	if err := p.io.Close(); err != nil {
		log.G(ctx).WithError(err).Warnf("%s: closing stdio", p.name())
	}
	p.mu.Lock()
	if err == nil && p.gp.OOMKilled() {
		// Before the exit: containerd's CRI records the reason
		// OOMKilled for an exit that follows a TaskOOM.
		send(oomEvent(p))
	}
	send(exitEvent(p))
	close(p.exited)
	p.mu.Unlock()
	// After the exit event: Delete waits for ioDone, and its TaskDelete
	// must follow the TaskExit.
	close(p.ioDone)
}

// waitIO waits (up to d) until the output is drained and stdio closed.
func (p *taskProcess) waitIO(d time.Duration) bool {
	select {
	case <-p.ioDone:
		return true
	case <-time.After(d):
		return false
	}
}

// exit returns the recorded exit (valid once ended is closed).
func (p *taskProcess) exit() (int, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitStatus, p.exitedAt
}

// kill signals the process (all: every process of the container).
// containerd expects NotFound for a process that has exited, also before
// its exit is reported (runc's shim: once the reaper has seen it).
func (p *taskProcess) kill(ctx context.Context, sig uint32, all bool) error {
	if p.hasEnded() {
		return fmt.Errorf("%s: process already finished: %w", p.name(), errdefs.ErrNotFound)
	}
	if err := p.gp.Signal(ctx, sig, all); err != nil {
		// The agent refuses a process that has exited (its exit is on
		// its way here).
		var ae *runtime.AgentError
		if (errors.As(err, &ae) && ae.Code == codes.FailedPrecondition) || p.endedWithin(2*time.Second) {
			return fmt.Errorf("%s: process already finished: %w", p.name(), errdefs.ErrNotFound)
		}
		return err
	}
	return nil
}

// hasEnded reports whether the process has ended in the guest.
func (p *taskProcess) hasEnded() bool {
	select {
	case <-p.ended:
		return true
	default:
		return false
	}
}

// endedWithin waits up to d for the process to end in the guest.
func (p *taskProcess) endedWithin(d time.Duration) bool {
	select {
	case <-p.ended:
		return true
	case <-time.After(d):
		return false
	}
}

// hasExitedWithin waits up to d for the exit to be recorded.
func (p *taskProcess) hasExitedWithin(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}
