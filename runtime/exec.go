package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// ExecOptions are the inputs of Exec.
type ExecOptions struct {
	ID      string
	Process *specs.Process
	// ConsoleSocket receives a host pty master when Process.Terminal is set
	// (podman, containerd); without it the caller's Terminal is used.
	ConsoleSocket string
	Stdio         Stdio
	Terminal      func() (sizes <-chan WindowSize, restore func(), err error)
	// Ready, when set, receives "ok\n" once the process runs, or the error
	// that stopped it (exec --detach's waiter).
	Ready io.WriteCloser
}

// Exec runs an additional process in a running container's VM, relays its
// stdio and returns its exit status.
func Exec(ctx context.Context, c Config, o ExecOptions) (status int, err error) {
	defer func() {
		if o.Ready != nil && err != nil {
			fmt.Fprintf(o.Ready, "error: %v\n", err)
			o.Ready.Close()
		}
	}()
	st, err := loadState(c, o.ID)
	if err != nil {
		return -1, err
	}
	if st.Status != StatusRunning {
		return -1, fmt.Errorf("cannot exec in container %q: it is %s, not running: %w", o.ID, st.Status, ErrWrongState)
	}
	if o.Process == nil || len(o.Process.Args) == 0 {
		return -1, fmt.Errorf("exec in container %q: the process has no args", o.ID)
	}
	path := filepath.Join(stateDir(c, o.ID), monitorSock)
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return -1, fmt.Errorf("connecting to the monitor of container %q: %w", o.ID, err)
	}
	// The connection is this exec's lifeline: the monitor's end (VM
	// stopped) fails every pending call, as a VMM exit does for run.
	inst := &Instance{ID: o.ID, exited: make(chan struct{})}
	client := newAgentClient(conn, ttrpc.WithOnClose(func() { close(inst.exited) }))
	defer client.Close()
	inst.Agent = agentapi.NewAgentClient(client)

	p, err := inst.CreateProcess(ctx, "exec-"+randomSuffix(), o.Process)
	if err != nil {
		return -1, err
	}
	stdio := o.Stdio
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Process.Terminal {
		if o.ConsoleSocket != "" {
			master, slave, err := openPty()
			if err != nil {
				return -1, err
			}
			err = sendConsole(o.ConsoleSocket, master)
			master.Close()
			if err != nil {
				slave.Close()
				return -1, err
			}
			defer slave.Close()
			_ = takeControllingTerminal(slave)
			go followWindowSize(pctx, p, slave)
			stdio = Stdio{Stdin: slave, Stdout: slave}
		} else if o.Terminal != nil {
			sizes, restore, err := o.Terminal()
			if err != nil {
				return -1, err
			}
			if restore != nil {
				defer restore()
			}
			if sizes != nil {
				go forwardResizes(pctx, p, sizes)
			}
		}
	}
	if err := p.Start(ctx); err != nil {
		return -1, err
	}
	if o.Ready != nil {
		fmt.Fprintf(o.Ready, "ok\n")
		o.Ready.Close()
		o.Ready = nil
	}
	progress := make(chan struct{}, 1)
	pumped := make(chan error, 1)
	go func() { pumped <- p.Pump(pctx, stdio, progress) }()
	status, err = p.Wait(ctx)
	if lost, ok := LostStatus(err); ok {
		// The container's VM ended (its monitor gone with it): the
		// process was killed with it, as runc's execs die with their
		// PID namespace.
		return lost, nil
	}
	if err != nil {
		return -1, err
	}
	if err := drain(pumped, progress, drainGrace); err != nil {
		return status, err
	}
	return status, nil
}

// ExecDetached starts the waiter of exec --detach: waiter is the CLI
// re-executed to run Exec with its ready pipe on fd 3. It returns the
// waiter's pid (exec's --pid-file: conmon waits for it) once the process
// runs in the guest.
func ExecDetached(ctx context.Context, c Config, id string, waiter *exec.Cmd) (int, error) {
	pid, err := spawnReady(ctx, waiter, 2*callTimeout, fmt.Sprintf("exec in container %q", id), nil)
	return pid, notReadyConsole(err, stateDir(c, id))
}
