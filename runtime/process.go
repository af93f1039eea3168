package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// Process is one process in the guest: the container's main process or an
// exec.
type Process struct {
	ID   string
	Pid  uint32
	inst *Instance
	// oomKilled: the exit Wait saw was the guest's OOM killer's.
	oomKilled atomic.Bool
	// waited: Wait has returned.
	waited atomic.Bool
}

// OOMKilled reports whether the exit Wait returned was a kill by the
// guest kernel's OOM killer (in the container's cgroup).
func (p *Process) OOMKilled() bool { return p.oomKilled.Load() }

// CreateProcess prepares p in the guest up to its execve, with the limits
// p does not set inherited from this process (withInheritedRlimits).
func (inst *Instance) CreateProcess(ctx context.Context, id string, p *specs.Process) (*Process, error) {
	pj, err := processJSON(withInheritedRlimits(p))
	if err != nil {
		return nil, err
	}
	var resp *agentapi.CreateProcessResponse
	err = inst.call(ctx, callTimeout, func(ctx context.Context) error {
		resp, err = inst.Agent.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: id, ProcessJson: pj, ContainerId: inst.containerID})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating process %q in container %q: %w", id, inst.ID, err)
	}
	return &Process{ID: id, Pid: resp.Pid, inst: inst}, nil
}

// Start lets the created process run.
func (p *Process) Start(ctx context.Context) error {
	err := p.inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := p.inst.Agent.StartProcess(ctx, &agentapi.ProcessRequest{Id: p.ID})
		return err
	})
	if err != nil {
		return fmt.Errorf("starting process %q in container %q: %w", p.ID, p.inst.ID, err)
	}
	return nil
}

// Signal sends sig to the process, or with all to every process of the
// container.
func (p *Process) Signal(ctx context.Context, sig uint32, all bool) error {
	err := p.inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := p.inst.Agent.SignalProcess(ctx, &agentapi.SignalRequest{Id: p.ID, Signal: sig, All: all})
		return err
	})
	if err != nil {
		return fmt.Errorf("signalling process %q in container %q with %d: %w", p.ID, p.inst.ID, sig, err)
	}
	if sig == uint32(syscall.SIGKILL) && p.ID == p.inst.ID {
		p.inst.afterKill(p.waited.Load)
	}
	return nil
}

// Resize sets the window size of the process's terminal.
func (p *Process) Resize(ctx context.Context, width, height uint32) error {
	err := p.inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := p.inst.Agent.ResizePty(ctx, &agentapi.ResizePtyRequest{Id: p.ID, Width: width, Height: height})
		return err
	})
	if err != nil {
		return fmt.Errorf("resizing the terminal of process %q in container %q: %w", p.ID, p.inst.ID, err)
	}
	return nil
}

// Wait blocks until the process exits and returns its status (the exit
// code, or 128+N after signal N). It has no deadline of its own: it ends
// with the process, with ctx, or with the VM (its exit closes the
// connection).
func (p *Process) Wait(ctx context.Context) (int, error) {
	defer p.waited.Store(true)
	var resp *agentapi.WaitResponse
	err := p.inst.call(ctx, 0, func(ctx context.Context) error {
		var err error
		resp, err = p.inst.Agent.WaitProcess(ctx, &agentapi.ProcessRequest{Id: p.ID})
		return err
	})
	if err != nil {
		if st, ok := p.switchRootEnd(err); ok {
			return st, nil
		}
		// A VM that ended is in err already: call wraps ErrVMExited with
		// the driver's exit error, which ends with the console's tail.
		return -1, fmt.Errorf("waiting for process %q in container %q: %w", p.ID, p.inst.ID, err)
	}
	p.oomKilled.Store(resp.OomKilled)
	return exitStatus(resp.ExitStatus), nil
}

// exitStatus checks an exit status from the guest, which the host does not
// trust: an exit code is 0-255 and a signal death 128+N (129-192); anything
// else reads as 255, the status of a failure with no better code.
func exitStatus(s int32) int {
	if s < 0 || s > 255 {
		return 255
	}
	return int(s)
}

// Stdio are the host ends of a process's standard streams; nil ones are
// not connected.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Pump copies stdio between the host and the process until both outputs
// reach end of file. Stdin is copied in the background and closed in the
// guest at its end of file; a stdin that never ends does not hold Pump.
// progress receives a tick whenever output arrives, so callers can tell a
// quiet stream from a busy one.
func (p *Process) Pump(ctx context.Context, s Stdio, progress chan<- struct{}) error {
	if s.Stdin != nil {
		go p.copyStdin(ctx, s.Stdin)
	} else {
		_ = p.closeStdin(ctx)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, out := range []struct {
		w    io.Writer
		read func(context.Context, *agentapi.ReadRequest) (*agentapi.ReadResponse, error)
	}{{s.Stdout, p.inst.Agent.ReadStdout}, {s.Stderr, p.inst.Agent.ReadStderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.copyOutput(ctx, out.w, out.read, progress)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (p *Process) copyOutput(ctx context.Context, w io.Writer, read func(context.Context, *agentapi.ReadRequest) (*agentapi.ReadResponse, error), progress chan<- struct{}) error {
	if w == nil {
		w = io.Discard
	}
	for {
		var resp *agentapi.ReadResponse
		err := p.inst.call(ctx, 0, func(ctx context.Context) error {
			var err error
			resp, err = read(ctx, &agentapi.ReadRequest{Id: p.ID, MaxBytes: agentapi.MaxReadBytes})
			return err
		})
		if err != nil {
			return fmt.Errorf("reading output of process %q: %w", p.ID, err)
		}
		if len(resp.Data) == 0 {
			return nil
		}
		if progress != nil {
			select {
			case progress <- struct{}{}:
			default:
			}
		}
		if _, err := w.Write(resp.Data); err != nil {
			return fmt.Errorf("writing output of process %q: %w", p.ID, err)
		}
	}
}

func (p *Process) copyStdin(ctx context.Context, r io.Reader) {
	buf := make([]byte, 64<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			data := buf[:n]
			err := p.inst.call(ctx, callTimeout, func(ctx context.Context) error {
				_, err := p.inst.Agent.WriteStdin(ctx, &agentapi.WriteStdinRequest{Id: p.ID, Data: data})
				return err
			})
			if err != nil {
				// The process no longer reads (exited or closed its
				// stdin): stop forwarding, as a broken pipe would.
				return
			}
		}
		if rerr != nil {
			_ = p.closeStdin(ctx)
			return
		}
	}
}

func (p *Process) closeStdin(ctx context.Context) error {
	return p.inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := p.inst.Agent.CloseStdin(ctx, &agentapi.ProcessRequest{Id: p.ID})
		return err
	})
}

// drainGrace is how long output may stay silent after the process exited
// before the runtime stops waiting for its end of file (a background child
// may hold the pipe open forever, as with runc the container's end kills it).
const drainGrace = 2 * time.Second

// switchRootEnd is the status of a switch-root container's process (PID 1
// of the VM, its id the container's) whose VM ended under the wait: what
// the console says of its end (switchRootStatus).
func (p *Process) switchRootEnd(err error) (int, bool) {
	if !p.inst.switchRoot || p.ID != p.inst.ID || !errors.Is(err, ErrVMExited) {
		return 0, false
	}
	return switchRootStatus(p.inst.ConsoleTail(consoleStatusLines))
}

// consoleStatusLines is how much of the console switchRootEnd reads: the
// kernel's last words come after the shutdown's.
const consoleStatusLines = 200
