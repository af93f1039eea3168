package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/monitorapi"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// CreateOptions are create's inputs. Monitor is the command that runs the
// monitor (the CLI re-executing itself); Create adds the ready pipe as its
// fd 3 and starts it in a session of its own, inheriting stdio.
type CreateOptions struct {
	BundleDir string
	ID        string
	Monitor   *exec.Cmd
}

// ReadyFD is the fd of the ready pipe in the monitor and in exec's waiter.
const ReadyFD = 3

// Create validates the bundle, claims the id, starts the monitor and waits
// until it has created the container (VM up, process created, not
// started). It returns the monitor's pid, for --pid-file.
func Create(ctx context.Context, c Config, o CreateOptions) (pid int, err error) {
	if err := ValidateID(o.ID); err != nil {
		return 0, err
	}
	b, err := bundle.Load(o.BundleDir)
	if err != nil {
		return 0, err
	}
	dir, err := createStateDir(c, o.ID)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	sandbox, err := podSandbox(c, b.Spec)
	if err != nil {
		return 0, fmt.Errorf("container %q: %w", o.ID, err)
	}
	prepareMonitor(o.Monitor, c, b.Spec)
	// Always set, so that the caller's environment never names one.
	o.Monitor.Env = append(o.Monitor.Env, monitorSandboxEnv+"="+sandbox)
	// The monitor is recorded as soon as it runs: a create killed before
	// the monitor is ready leaves a container that delete --force can
	// still stop.
	record := func(pid int) error { return writeMonitorPid(dir, pid) }
	pid, err = spawnReady(ctx, o.Monitor, time.Duration(c.BootTimeout)+5*time.Minute, fmt.Sprintf("creating container %q", o.ID), record)
	return pid, notReadyConsole(err, dir)
}

// errNotReady: a process spawnReady started did not say it was ready in
// time.
var errNotReady = errors.New("not ready")

// notReadyConsole adds the last lines of the console of the VM whose state
// dir is dir to err when it is spawnReady's errNotReady: the deadlines of
// the monitor's own passed unnoticed, and what the guest printed last may
// say why.
func notReadyConsole(err error, dir string) error {
	if !errors.Is(err, errNotReady) {
		return err
	}
	return fmt.Errorf("%w; last console output:\n%s", err, vmm.ConsoleTail(filepath.Join(dir, consoleLogFile), 10))
}

// spawnReady starts cmd in a session of its own with the write end of a
// ready pipe as its fd 3, tells started (if not nil) its pid, and waits (up
// to deadline) for it to write "ok\n" or "error: ...\n". On failure the
// process is stopped and reaped.
func spawnReady(ctx context.Context, cmd *exec.Cmd, deadline time.Duration, what string, started func(pid int) error) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("%s: creating the ready pipe: %w", what, err)
	}
	defer r.Close()
	cmd.ExtraFiles = []*os.File{w}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, fmt.Errorf("%s: starting %s: %w", what, cmd.Path, err)
	}
	w.Close()
	// Watched without being reaped: once it is ready, the process is the
	// engine's (conmon, a subreaper, waits for the pid we report and
	// inherits it when we exit). Reaping it here lost the exit status of
	// one that ended before we did: podman exec exited 255 with no
	// output.
	exited := make(chan struct{})
	go func() {
		waitNoReap(cmd.Process.Pid)
		close(exited)
	}()
	// reap collects it on the paths where it is still ours.
	reap := func() { <-exited; _ = cmd.Wait() }
	if started != nil {
		if err := started(cmd.Process.Pid); err != nil {
			stopMonitor(cmd.Process, exited)
			reap()
			return 0, fmt.Errorf("%s: %w", what, err)
		}
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s == "ok\n" {
			return cmd.Process.Pid, nil
		}
		reap()
		if msg, ok := strings.CutPrefix(strings.TrimSpace(s), "error: "); ok {
			return 0, errors.New(msg)
		}
		return 0, fmt.Errorf("%s: the helper process exited (%v) before it was ready", what, cmd.ProcessState)
	case <-time.After(deadline):
		stopMonitor(cmd.Process, exited)
		reap()
		return 0, fmt.Errorf("%s: %w within %s", what, errNotReady, deadline)
	case <-ctx.Done():
		stopMonitor(cmd.Process, exited)
		reap()
		return 0, fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// waitNoReap waits until process pid has exited and leaves it waitable
// (waitid with WNOWAIT).
func waitNoReap(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// stopMonitor asks a monitor we started to tear its VM down (SIGTERM),
// then kills it.
func stopMonitor(p *os.Process, exited <-chan struct{}) {
	terminate(p, func(d time.Duration) bool {
		select {
		case <-exited:
			return true
		case <-time.After(d):
			return false
		}
	})
}

// Grace periods of terminate: a monitor's teardown after SIGTERM, its end
// after SIGKILL.
const (
	termGrace = 15 * time.Second
	killGrace = 5 * time.Second
)

// terminate sends a monitor SIGTERM (it tears its VM down), then SIGKILL
// when it has not exited after termGrace; exited(d) waits up to d for the
// exit. It reports whether the monitor is gone.
func terminate(p *os.Process, exited func(d time.Duration) bool) bool {
	p.Signal(syscall.SIGTERM)
	if exited(termGrace) {
		return true
	}
	p.Kill()
	return exited(killGrace)
}

// State returns the container's state, its status settled against its
// monitor's liveness.
func StateOf(c Config, id string) (*State, error) { return loadState(c, id) }

// controlConn is a connection to a container's monitor.
type controlConn struct {
	client  *ttrpc.Client
	Agent   agentapi.AgentService
	Monitor monitorapi.MonitorService
}

func (cc *controlConn) Close() { cc.client.Close() }

func dialMonitor(c Config, id string) (*controlConn, error) {
	path := filepath.Join(stateDir(c, id), monitorSock)
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to the monitor of container %q: %w", id, err)
	}
	cl := newAgentClient(conn)
	return &controlConn{client: cl, Agent: agentapi.NewAgentClient(cl), Monitor: monitorapi.NewMonitorClient(cl)}, nil
}

// withRunning loads the state, checks it is one of allowed, and calls f
// with a connection to the monitor.
func withMonitor(ctx context.Context, c Config, id string, allowed []Status, what string, f func(context.Context, *State, *controlConn) error) error {
	st, err := loadState(c, id)
	if err != nil {
		return err
	}
	ok := false
	for _, s := range allowed {
		ok = ok || st.Status == s
	}
	if !ok {
		if st.Status == StatusStopped {
			// runc's words, which engines match on.
			return fmt.Errorf("cannot %s container %q: container not running (it is stopped): %w", what, id, ErrWrongState)
		}
		return fmt.Errorf("cannot %s container %q: it is %s: %w", what, id, st.Status, ErrWrongState)
	}
	cc, err := dialMonitor(c, id)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return f(ctx, st, cc)
}

// Start runs the created container's process.
func Start(ctx context.Context, c Config, id string) error {
	// runtime.md "start": "Attempting to start a container that is not
	// created MUST have no effect on the container and MUST generate an
	// error." (the monitor checks again under its lock).
	return withMonitor(ctx, c, id, []Status{StatusCreated}, "start", func(ctx context.Context, st *State, cc *controlConn) error {
		_, err := cc.Agent.StartProcess(ctx, &agentapi.ProcessRequest{Id: id})
		if err != nil {
			return fmt.Errorf("starting container %q: %w", id, agentError(err))
		}
		return nil
	})
}

// Kill sends sig to the container's process, or with all to all of its
// processes.
func Kill(ctx context.Context, c Config, id string, sig syscall.Signal, all bool) error {
	// runtime.md "kill": "Attempting to send a signal to a container that
	// is neither created nor running MUST have no effect on the container
	// and MUST generate an error."
	return withMonitor(ctx, c, id, []Status{StatusCreated, StatusRunning, StatusPaused}, "kill", func(ctx context.Context, st *State, cc *controlConn) error {
		_, err := cc.Agent.SignalProcess(ctx, &agentapi.SignalRequest{Id: id, Signal: uint32(sig), All: all})
		if err != nil {
			return fmt.Errorf("signalling container %q with %d: %w", id, sig, agentError(err))
		}
		return nil
	})
}

// Pause freezes the container's VM; Resume thaws it.
func Pause(ctx context.Context, c Config, id string) error {
	return withMonitor(ctx, c, id, []Status{StatusRunning, StatusCreated}, "pause", func(ctx context.Context, st *State, cc *controlConn) error {
		_, err := cc.Monitor.Pause(ctx, &monitorapi.Empty{})
		return agentError(err)
	})
}

func Resume(ctx context.Context, c Config, id string) error {
	return withMonitor(ctx, c, id, []Status{StatusPaused}, "resume", func(ctx context.Context, st *State, cc *controlConn) error {
		_, err := cc.Monitor.Resume(ctx, &monitorapi.Empty{})
		return agentError(err)
	})
}

// Processes lists the processes of the container in its VM.
func Processes(ctx context.Context, c Config, id string) ([]*agentapi.ProcessInfo, error) {
	var out []*agentapi.ProcessInfo
	err := withMonitor(ctx, c, id, []Status{StatusCreated, StatusRunning, StatusPaused}, "list processes of", func(ctx context.Context, st *State, cc *controlConn) error {
		resp, err := cc.Agent.ListProcesses(ctx, &agentapi.ListProcessesRequest{})
		if err != nil {
			return agentError(err)
		}
		out = guestProcesses(resp.Processes)
		return nil
	})
	return out, err
}

// Delete removes a stopped container: its disk image and state. With
// force a container in any state is stopped first (its VM torn down).
// Warnings (a failing poststop hook) go to warn.
func Delete(ctx context.Context, c Config, id string, force bool, warn io.Writer) error {
	st, err := loadState(c, id)
	if err != nil {
		return err
	}
	dir := stateDir(c, id)
	unlock, err := lockState(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if st.Status != StatusStopped {
		// runtime.md "delete": "Attempting to delete a container that is
		// not stopped MUST have no effect on the container and MUST
		// generate an error." runc departs from that for a created
		// container: its delete kills it first (libcontainer's destroy of a
		// created container), and the engines are written against runc:
		// buildah deletes each RUN step's container without --force while
		// it is still created when the step fails or is cancelled, and the
		// VM would be left behind. Do as runc does (docs/runtime-tools.md).
		if !force && st.Status != StatusCreated {
			return fmt.Errorf("cannot delete container %q: it is %s, not stopped (use --force): %w", id, st.Status, ErrWrongState)
		}
		if st.MonitorPid > 0 && monitorAlive(st) {
			if err := terminateMonitor(st); err != nil {
				return err
			}
		}
	} else if st.MonitorPid > 0 && monitorAlive(st) {
		// Stopped, and the monitor is still tearing the VM down: let it
		// finish, so that nothing of the container outlives delete.
		if err := waitMonitor(st, 30*time.Second); err != nil {
			return err
		}
	}
	// A monitor that crashed left its bridge address, tap and name:
	// release them (each step is a no-op when already done).
	if err := releaseBridge(c, id); err != nil {
		return fmt.Errorf("deleting container %q: %w", id, err)
	}
	// The shared directories first: they may hold bind mounts of host
	// paths and of the rootfs, which the removal of the state directory
	// must never reach.
	if err := removeShares(dir); err != nil {
		return fmt.Errorf("deleting container %q: %w", id, err)
	}
	if st.Disk != "" {
		if err := os.Remove(st.Disk); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the disk of container %q: %w", id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing the state of container %q: %w", id, err)
	}
	// runtime.md "Lifecycle" step 13: poststop hooks after the container
	// is deleted; "If any poststop hook fails, the runtime MUST log a
	// warning, but the remaining hooks and lifecycle continue".
	if b, err := bundle.Load(st.Bundle); err == nil && b.Spec.Hooks != nil && len(b.Spec.Hooks.Poststop) > 0 {
		ost := st.OCIState()
		ost.Status = specs.StateStopped
		if err := RunHooks(ctx, b.Spec.Hooks.Poststop, ost, HookPoststop); err != nil && warn != nil {
			fmt.Fprintf(warn, "initos-runtime: warning: %v\n", err)
		}
	}
	return nil
}

// waitMonitor waits for a monitor to exit on its own, then ends it.
func waitMonitor(st *State, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for monitorAlive(st) {
		if time.Now().After(deadline) {
			return terminateMonitor(st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// terminateMonitor stops a live monitor found by its state: SIGTERM (it
// tears its VM down), SIGKILL after termGrace.
func terminateMonitor(st *State) error {
	p, err := os.FindProcess(st.MonitorPid)
	if err != nil {
		return nil
	}
	gone := terminate(p, func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for monitorAlive(st) {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
		return true
	})
	if !gone {
		return fmt.Errorf("the monitor %d of container %q does not exit", st.MonitorPid, st.ID)
	}
	return nil
}

// Stats is the container's resource use: the VM as the host sees it, and
// the number of processes in the guest.
func Stats(ctx context.Context, c Config, id string) (*monitorapi.StatsResponse, error) {
	var out *monitorapi.StatsResponse
	err := withMonitor(ctx, c, id, []Status{StatusCreated, StatusRunning, StatusPaused}, "read stats of", func(ctx context.Context, st *State, cc *controlConn) error {
		var err error
		out, err = cc.Monitor.Stats(ctx, &monitorapi.Empty{})
		return agentError(err)
	})
	return out, err
}
