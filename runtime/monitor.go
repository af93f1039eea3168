package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/monitorapi"
	"github.com/initos-runtime/initos-runtime/procview"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// MonitorOptions are the inputs of the monitor process that create leaves
// behind (design section 2: the pid conmon waits for).
type MonitorOptions struct {
	BundleDir     string
	ID            string
	ConsoleSocket string
	// Ready receives "ok\n" once the container is created, or the error
	// that stopped it; create waits for it.
	Ready io.WriteCloser
	// Stdio is what the monitor inherited (conmon's pipes): the container
	// process's stdio unless it has a terminal.
	Stdio Stdio
	// Log receives the monitor's own messages (never the container's
	// stderr).
	Log *log.Logger

	// enterView moves the monitor's main thread into the container's view
	// (MonitorMain) and says how its /proc is to be served; nil: it stays
	// in the host's.
	enterView func(rootfs string, mounts []specs.Mount) (viewProc, error)
}

// monitor is the state of a running monitor process.
type monitor struct {
	c     Config
	dir   string
	inst  *Instance
	main  *Process
	log   *log.Logger
	mu    sync.Mutex // guards st and its file
	st    *State
	spec  *specs.Spec
	start chan struct{} // closed when the main process is started
	self  hostIdentity
	// mainExited is set once the container's process has exited.
	mainExited atomic.Bool
	// members are the containers of other monitors that joined this
	// one's VM (member.go).
	members members
	// vmPaused: the pause stopped the whole VM (it hosted no member then);
	// a pause with members froze the container's processes only.
	vmPaused atomic.Bool
}

// RunMonitor boots the container's VM, creates its process, reports ready
// and serves the control socket until the process has exited; it returns
// the process's exit status (the monitor's own exit code, which conmon
// records).
func RunMonitor(ctx context.Context, c Config, o MonitorOptions) int {
	m := &monitor{c: c, dir: stateDir(c, o.ID), log: o.Log, start: make(chan struct{})}
	if m.log == nil {
		m.log = log.New(io.Discard, "", 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// delete --force and conmon's stop end the monitor with SIGTERM: tear
	// the VM down instead of leaving it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	terminated := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			m.log.Printf("monitor: %v: stopping the VM", s)
			close(terminated)
			cancel()
			if m.inst != nil {
				m.inst.destroy()
			}
		case <-ctx.Done():
		}
	}()

	self, err := enterMonitorNamespaces()
	m.self = self
	var stdio Stdio
	if err == nil {
		stdio, err = m.create(ctx, o)
	}
	if err != nil {
		m.log.Printf("monitor: %v", err)
		fmt.Fprintf(o.Ready, "error: %v\n", err)
		o.Ready.Close()
		return 1
	}
	fmt.Fprintf(o.Ready, "ok\n")
	o.Ready.Close()

	status := m.serve(ctx, stdio)
	select {
	case <-terminated:
		status = 128 + int(syscall.SIGKILL)
	default:
	}
	// The state says stopped once the VM is gone, just before the monitor
	// exits: until then the container is stopping, kill has no effect and
	// succeeds (runc's window between the exit and "stopped" is as short),
	// so an engine's last SIGKILL never fails and skips its delete.
	select {
	case <-terminated:
	default:
		// The containers that joined the VM end on their own terms (an
		// engine stops a pod's containers together, in no order).
		m.awaitMembers(memberGrace)
	}
	m.dropMembers()
	if err := m.inst.Shutdown(context.Background(), 10*time.Second); err != nil {
		m.log.Printf("monitor: %v", err)
	}
	m.setStopped(status)
	os.Remove(filepath.Join(m.dir, monitorSock))
	os.Remove(filepath.Join(m.dir, memberSock))
	return status
}

// create boots the VM, creates the main process and the console, writes
// the state and starts serving the control socket.
func (m *monitor) create(ctx context.Context, o MonitorOptions) (stdio Stdio, err error) {
	b, err := bundle.Load(o.BundleDir)
	if err != nil {
		return stdio, err
	}
	m.spec = b.Spec
	if b.Spec.Process.Terminal && o.ConsoleSocket == "" {
		return stdio, fmt.Errorf("container %q: process.terminal is set: --console-socket is required", o.ID)
	}
	// A container that shares another's network namespace joins its VM
	// (member.go); create found it.
	sandbox := os.Getenv(monitorSandboxEnv)
	os.Unsetenv(monitorSandboxEnv)
	var inst *Instance
	if sandbox != "" {
		inst, err = joinSandbox(ctx, m.c, b, o.ID, sandbox, m.dir)
	} else {
		inst, err = bootMonitored(ctx, m.c, b, o.ID, m.dir, m.self.ownNetns)
	}
	if err != nil {
		return stdio, err
	}
	for _, w := range inst.Warnings {
		m.log.Printf("monitor: %s", w)
	}
	inst.keepDisk = true
	m.inst = inst
	// A member's VM is its sandbox's monitor's, which follows for it.
	inst.FollowHostClock(func(format string, args ...any) { m.log.Printf("monitor: "+format, args...) })
	defer func() {
		if err != nil {
			inst.keepDisk = false
			inst.destroy()
		}
	}()
	p, err := inst.CreateProcess(ctx, o.ID, b.Spec.Process)
	if err != nil {
		return stdio, err
	}
	m.main = p
	stdio = o.Stdio
	if b.Spec.Process.Terminal {
		stdio, err = m.console(ctx, o.ConsoleSocket, p)
		if err != nil {
			return stdio, err
		}
	}
	m.st = &State{
		ID: o.ID, Bundle: b.Dir, Rootfs: b.Rootfs, Created: time.Now().UTC(), Status: StatusCreated,
		Annotations: b.Spec.Annotations, Owner: "", MonitorPid: m.self.pid, MonitorStart: m.self.start,
		GuestPid: p.Pid, Disk: inst.Disk, Sandbox: sandbox,
	}
	m.st.MemoryMiB, m.st.CPUs = vmSize(m.c, b.Spec)
	if err := saveState(m.dir, m.st); err != nil {
		return stdio, err
	}
	// runtime.md "Lifecycle" steps 4-5: prestart and createRuntime hooks
	// run once the runtime environment exists, then createContainer; "If
	// any ... hook fails, the runtime MUST generate an error, stop the
	// container, and continue the lifecycle at step 12" (the deferred
	// teardown above).
	for _, stage := range []string{HookPrestart, HookCreateRuntime, HookCreateContainer} {
		if err := m.runHooks(ctx, stage); err != nil {
			return stdio, err
		}
	}
	if err := m.listen(ctx); err != nil {
		return stdio, err
	}
	if o.enterView != nil && os.Getpid() == 1 {
		// Only in the monitor's own namespaces (create's clone).
		proc, err := o.enterView(b.Rootfs, b.Spec.Mounts)
		if err != nil {
			return stdio, fmt.Errorf("container %q: %w", o.ID, err)
		}
		if proc.fallback != nil {
			m.log.Printf("monitor: container %q: the view's /proc is the monitor's (podman top lists the VM's host processes): %v", o.ID, proc.fallback)
		}
		if proc.fd >= 0 {
			v := procview.New(inst.ProcessDetail, hostProcFile, m.log)
			if _, err := procview.Serve(proc.fd, v); err != nil {
				return stdio, fmt.Errorf("container %q: %w", o.ID, err)
			}
		}
	}
	return stdio, nil
}

// hostProcFile reads the host's /proc/NAME: a file that is the same in
// every PID namespace (stat, uptime), for the view's /proc.
func hostProcFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("/proc", name))
}

// runHooks runs one stage of the spec's hooks on the host with the
// container's current state.
func (m *monitor) runHooks(ctx context.Context, stage string) error {
	hooks := HooksFor(m.spec.Hooks, stage)
	if len(hooks) == 0 {
		return nil
	}
	m.mu.Lock()
	st := m.st.OCIState()
	m.mu.Unlock()
	return RunHooks(ctx, hooks, st, stage)
}

// console makes the host pty whose master goes to the console socket and
// bridges its slave with the guest pty.
func (m *monitor) console(ctx context.Context, socket string, p *Process) (Stdio, error) {
	master, slave, err := openPty()
	if err != nil {
		return Stdio{}, err
	}
	defer master.Close() // the receiver has its own copy
	if err := sendConsole(socket, master); err != nil {
		slave.Close()
		return Stdio{}, err
	}
	if err := takeControllingTerminal(slave); err != nil {
		m.log.Printf("monitor: %v (resizes will not reach the guest)", err)
	}
	go followWindowSize(ctx, p, slave)
	return Stdio{Stdin: slave, Stdout: slave}, nil
}

// followWindowSize sends the host pty's size to the guest now and at every
// SIGWINCH.
func followWindowSize(ctx context.Context, p *Process, tty *os.File) {
	winch := make(chan os.Signal, 4)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	var last WindowSize
	for {
		if ws, err := windowSize(int(tty.Fd())); err == nil && ws != last && ws.Width > 0 && ws.Height > 0 {
			if err := p.Resize(ctx, ws.Width, ws.Height); err == nil {
				last = ws
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-winch:
		}
	}
}

// listen serves the control socket: the Monitor service, and the Agent
// service forwarded to the guest.
func (m *monitor) listen(ctx context.Context) error {
	path := filepath.Join(m.dir, monitorSock)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %q: %w", path, err)
	}
	if err := vmm.RestrictSockets(path); err != nil {
		l.Close()
		return err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		l.Close()
		return fmt.Errorf("creating control server: %w", err)
	}
	agentapi.RegisterAgentService(srv, &agentProxy{m: m})
	monitorapi.RegisterMonitorService(srv, &monitorService{m: m})
	if m.inst.takesMembers() {
		if err := m.serveMembers(ctx); err != nil {
			srv.Close()
			l.Close()
			return err
		}
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ctx, l)
	return nil
}

// serve relays the main process's stdio until it has exited and returns
// its status.
func (m *monitor) serve(ctx context.Context, stdio Stdio) int {
	progress := make(chan struct{}, 1)
	pumped := make(chan error, 1)
	go func() { pumped <- m.main.Pump(ctx, stdio, progress) }()
	status, err := m.main.Wait(ctx)
	m.mainExited.Store(true)
	if err != nil {
		if lost, ok := LostStatus(err); ok {
			// The VM ended under the container (its VMM killed or
			// crashed): its processes died with it, as by SIGKILL.
			m.log.Printf("monitor: the container's processes were killed with its VM: %v", err)
			// The monitor's log goes with the state dir at delete (podman
			// deletes a container as soon as it exits): say it where the
			// engine keeps the container's output too.
			if w := firstWriter(stdio.Stderr, stdio.Stdout); w != nil {
				fmt.Fprintf(w, "initos-runtime: container %q: its VM ended under it (%s); its processes were killed\n", m.st.ID, m.inst.vmExit())
			}
			return lost
		}
		m.log.Printf("monitor: %v; console:\n%s", err, m.inst.ConsoleTail(20))
		return 255
	}
	if err := drain(pumped, progress, drainGrace); err != nil {
		m.log.Printf("monitor: %v", err)
	}
	return status
}

func (m *monitor) setStatus(s Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.Status = s
	return saveState(m.dir, m.st)
}

func (m *monitor) setStopped(status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st == nil {
		return
	}
	m.st.Status = StatusStopped
	m.st.ExitStatus = &status
	if err := saveState(m.dir, m.st); err != nil {
		m.log.Printf("monitor: %v", err)
	}
}

// pauser is what pause/resume need of a VM; both drivers have it.
type pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

type monitorService struct{ m *monitor }

func (s *monitorService) Pause(ctx context.Context, _ *monitorapi.Empty) (*monitorapi.Empty, error) {
	return s.freeze(ctx, true)
}

func (s *monitorService) Resume(ctx context.Context, _ *monitorapi.Empty) (*monitorapi.Empty, error) {
	return s.freeze(ctx, false)
}

func (s *monitorService) freeze(ctx context.Context, pause bool) (*monitorapi.Empty, error) {
	m := s.m
	m.mu.Lock()
	cur := m.st.Status
	m.mu.Unlock()
	if pause && cur != StatusRunning && cur != StatusCreated {
		return nil, fmt.Errorf("container %q is %s, not running: %w", m.st.ID, cur, ErrWrongState)
	}
	if !pause && cur != StatusPaused {
		return nil, fmt.Errorf("container %q is %s, not paused: %w", m.st.ID, cur, ErrWrongState)
	}
	next := StatusPaused
	var err error
	switch {
	case pause:
		// A VM the container shares (it is a member, or has members) runs
		// on for the others: the pause freezes this container's processes
		// alone, as runc's freezes one container's cgroup.
		whole := m.inst.remote == nil && m.members.count() == 0
		if whole {
			err = m.inst.Pause(ctx)
		} else {
			err = m.inst.FreezeContainer(ctx, true)
		}
		if err == nil {
			m.vmPaused.Store(whole)
		}
	default:
		if m.vmPaused.Load() {
			err = m.inst.Resume(ctx)
		} else {
			err = m.inst.FreezeContainer(ctx, false)
		}
		if err == nil {
			m.vmPaused.Store(false)
		}
		next = StatusRunning
		select {
		case <-m.start:
		default:
			next = StatusCreated
		}
	}
	if err != nil {
		return nil, err
	}
	return &monitorapi.Empty{}, m.setStatus(next)
}

// agentProxy forwards the guest agent's service to the control socket's
// clients, keeping the container's state in step with StartProcess.
type agentProxy struct{ m *monitor }

func (a *agentProxy) agent() agentapi.AgentService { return a.m.inst.Agent }

func (a *agentProxy) Ping(ctx context.Context, r *agentapi.PingRequest) (*agentapi.PingResponse, error) {
	return a.agent().Ping(ctx, r)
}

func (a *agentProxy) Setup(context.Context, *agentapi.SetupRequest) (*agentapi.Empty, error) {
	return nil, fmt.Errorf("container %q is set up by its monitor: %w", a.m.st.ID, ErrWrongState)
}

// container is the agent's name of the monitor's container: "" (the VM's
// own) unless it is a member of another monitor's VM, whose clients (exec,
// ps, update) cannot name another container of that VM.
func (a *agentProxy) container() string { return a.m.inst.containerID }

func (a *agentProxy) CreateProcess(ctx context.Context, r *agentapi.CreateProcessRequest) (*agentapi.CreateProcessResponse, error) {
	if r.Id == a.m.st.ID {
		return nil, fmt.Errorf("process id %q is the container's own: %w", r.Id, ErrWrongState)
	}
	if c := a.container(); c != "" {
		r.ContainerId = c
	}
	return a.agent().CreateProcess(ctx, r)
}

func (a *agentProxy) StartProcess(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	m := a.m
	if r.Id != m.st.ID {
		return a.agent().StartProcess(ctx, r)
	}
	m.mu.Lock()
	cur := m.st.Status
	m.mu.Unlock()
	// runtime.md "start": "Attempting to start a container that is not
	// created MUST have no effect on the container and MUST generate an
	// error."
	if cur != StatusCreated {
		return nil, fmt.Errorf("container %q is %s, not created: %w", m.st.ID, cur, ErrWrongState)
	}
	// The late network mode: the engine may have configured the monitor's
	// network namespace since create (buildah's netavark); the guest takes
	// that network before anything of the container runs.
	if err := m.inst.attachLateNetwork(ctx); err != nil {
		return nil, err
	}
	// Lifecycle step 7: startContainer hooks before the user program.
	// (They run on the host: the guest has no hook runner.)
	if err := m.runHooks(ctx, HookStartContainer); err != nil {
		m.kill()
		return nil, err
	}
	resp, err := a.agent().StartProcess(ctx, r)
	if err != nil {
		return nil, err
	}
	close(m.start)
	if err := m.setStatus(StatusRunning); err != nil {
		return nil, err
	}
	// Step 9: poststart hooks; a failure MUST produce an error and stop
	// the container.
	if err := m.runHooks(ctx, HookPoststart); err != nil {
		m.kill()
		return nil, err
	}
	return resp, nil
}

// kill ends the container's process (a failed hook stops the container).
func (m *monitor) kill() {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := m.main.Signal(ctx, uint32(syscall.SIGKILL), true); err != nil {
		m.log.Printf("monitor: %v", err)
	}
}

func (a *agentProxy) WriteStdin(ctx context.Context, r *agentapi.WriteStdinRequest) (*agentapi.WriteStdinResponse, error) {
	return a.agent().WriteStdin(ctx, r)
}

func (a *agentProxy) CloseStdin(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	return a.agent().CloseStdin(ctx, r)
}

func (a *agentProxy) ReadStdout(ctx context.Context, r *agentapi.ReadRequest) (*agentapi.ReadResponse, error) {
	return a.agent().ReadStdout(ctx, r)
}

func (a *agentProxy) ReadStderr(ctx context.Context, r *agentapi.ReadRequest) (*agentapi.ReadResponse, error) {
	return a.agent().ReadStderr(ctx, r)
}

func (a *agentProxy) ResizePty(ctx context.Context, r *agentapi.ResizePtyRequest) (*agentapi.Empty, error) {
	return a.agent().ResizePty(ctx, r)
}

func (a *agentProxy) SignalProcess(ctx context.Context, r *agentapi.SignalRequest) (*agentapi.Empty, error) {
	if r.Id == a.m.st.ID && a.m.mainExited.Load() {
		// The process has exited and the VM is being torn down: the
		// signal has nothing left to reach.
		return &agentapi.Empty{}, nil
	}
	resp, err := a.agent().SignalProcess(ctx, r)
	var ae *AgentError
	if r.Id == a.m.st.ID && errors.As(agentError(err), &ae) && ae.Code == codes.FailedPrecondition {
		// It exited a moment ago and its exit is on its way: the
		// container is stopping, as above.
		return &agentapi.Empty{}, nil
	}
	if err == nil && r.Id == a.m.st.ID && r.Signal == uint32(syscall.SIGKILL) {
		a.m.inst.afterKill(a.m.mainExited.Load)
	}
	return resp, err
}

func (a *agentProxy) WaitProcess(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitResponse, error) {
	return a.agent().WaitProcess(ctx, r)
}

func (a *agentProxy) ListProcesses(ctx context.Context, r *agentapi.ListProcessesRequest) (*agentapi.ListProcessesResponse, error) {
	if c := a.container(); c != "" {
		r.ContainerId = c
	}
	return a.agent().ListProcesses(ctx, r)
}

func (a *agentProxy) Stats(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.StatsResponse, error) {
	if c := a.container(); c != "" {
		r.ContainerId = c
	}
	return a.agent().Stats(ctx, r)
}

func (a *agentProxy) FreezeContainer(ctx context.Context, r *agentapi.FreezeRequest) (*agentapi.Empty, error) {
	if c := a.container(); c != "" {
		r.ContainerId = c
	}
	return a.agent().FreezeContainer(ctx, r)
}

func (a *agentProxy) UpdateLimits(ctx context.Context, r *agentapi.UpdateLimitsRequest) (*agentapi.Empty, error) {
	if c := a.container(); c != "" {
		r.ContainerId = c
	}
	return a.agent().UpdateLimits(ctx, r)
}

func (a *agentProxy) ConfigureNetwork(context.Context, *agentapi.NetworkRequest) (*agentapi.Empty, error) {
	return nil, fmt.Errorf("the network of container %q is configured by its monitor: %w", a.m.st.ID, ErrWrongState)
}

func (a *agentProxy) Restored(context.Context, *agentapi.RestoredRequest) (*agentapi.Empty, error) {
	return nil, fmt.Errorf("container %q was started by its monitor: %w", a.m.st.ID, ErrWrongState)
}

func (a *agentProxy) RemoveContainer(context.Context, *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	return nil, fmt.Errorf("container %q is the VM's only container: use delete: %w", a.m.st.ID, ErrWrongState)
}

// errPortForward refuses the port calls: port forward is the containerd
// shim's, for CRI pods; a monitor's container has no such client.
func (a *agentProxy) errPortForward() error {
	return fmt.Errorf("container %q: port forward is not served by the monitor: %w", a.m.st.ID, ErrUnsupported)
}

func (a *agentProxy) DialPort(context.Context, *agentapi.DialPortRequest) (*agentapi.DialPortResponse, error) {
	return nil, a.errPortForward()
}

func (a *agentProxy) ReadPort(context.Context, *agentapi.PortReadRequest) (*agentapi.ReadResponse, error) {
	return nil, a.errPortForward()
}

func (a *agentProxy) WritePort(context.Context, *agentapi.PortWriteRequest) (*agentapi.Empty, error) {
	return nil, a.errPortForward()
}

func (a *agentProxy) ClosePortWrite(context.Context, *agentapi.PortRequest) (*agentapi.Empty, error) {
	return nil, a.errPortForward()
}

func (a *agentProxy) ClosePort(context.Context, *agentapi.PortRequest) (*agentapi.Empty, error) {
	return nil, a.errPortForward()
}

func (a *agentProxy) Shutdown(context.Context, *agentapi.Empty) (*agentapi.Empty, error) {
	return nil, errors.New("shutdown is the monitor's: use kill or delete --force")
}

func (s *monitorService) Stats(ctx context.Context, _ *monitorapi.Empty) (*monitorapi.StatsResponse, error) {
	m := s.m
	if r := m.inst.remote; r != nil {
		// A member's VM is its sandbox's.
		resp, err := r.control.Monitor.Stats(ctx, &monitorapi.Empty{})
		if err != nil {
			return nil, err
		}
		if procs, err := m.inst.Processes(ctx); err == nil {
			resp.Pids = uint32(len(procs))
		}
		return resp, nil
	}
	cpu, rss, err := m.inst.Usage()
	if err != nil {
		return nil, err
	}
	resp := &monitorapi.StatsResponse{CpuNanos: cpu, MemoryBytes: rss, MemoryLimitBytes: uint64(m.st.MemoryMiB) << 20}
	if procs, err := m.inst.Agent.ListProcesses(ctx, &agentapi.ListProcessesRequest{}); err == nil {
		resp.Pids = uint32(len(procs.Processes))
	}
	return resp, nil
}

// firstWriter is the first of ws that is not nil.
func firstWriter(ws ...io.Writer) io.Writer {
	for _, w := range ws {
		if w != nil {
			return w
		}
	}
	return nil
}
