package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/mount"
	cruntime "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/network"
	"github.com/initos-runtime/initos-runtime/runtime"
)

// Service is the task service (task API v3) of one shim server: every
// container of its group (a pod, or one container) with its VM.
type Service struct {
	ctx         context.Context
	ns          string
	publisher   cshim.Publisher
	sd          shutdown.Service
	boot        bootFunc
	startView   startViewFunc
	listenPorts listenPortsFunc
	events      chan any
	// pending counts events sent and not yet published: Shutdown waits
	// for them, or the last ones (TaskDelete) would die with the process.
	pending sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container
	// pods are the VMs of the pod sandboxes this shim serves, by sandbox
	// id: the CRI groups a pod's containers into one shim.
	pods map[string]podVM
}

// ioDrainTimeout bounds Delete's wait for a process's output to end.
const ioDrainTimeout = 30 * time.Second

// eventsDrainTimeout bounds Shutdown's wait for the last events.
const eventsDrainTimeout = 10 * time.Second

// The CRI's annotations of a pod's containers.
const (
	annotationContainerType = "io.kubernetes.cri.container-type" // "sandbox" or "container"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
)

// NewService makes the task service; publisher receives the events.
func NewService(ctx context.Context, publisher cshim.Publisher, sd shutdown.Service) (*Service, error) {
	ns, _ := namespaces.Namespace(ctx)
	s := &Service{
		ctx:         ctx,
		ns:          ns,
		publisher:   publisher,
		sd:          sd,
		boot:        bootInstance,
		startView:   startView,
		listenPorts: listenPorts,
		events:      make(chan any, 128),
		containers:  map[string]*container{},
		pods:        map[string]podVM{},
	}
	go s.forward(ctx)
	return s, nil
}

// RegisterTTRPC registers the task service.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

// send queues an event; forward publishes them in order.
func (s *Service) send(e any) {
	s.pending.Add(1)
	s.events <- e
}

func (s *Service) forward(ctx context.Context) {
	ctx = namespaces.WithNamespace(context.WithoutCancel(ctx), s.ns)
	for e := range s.events {
		if err := s.publisher.Publish(ctx, cruntime.GetTopic(e), e); err != nil {
			log.G(ctx).WithError(err).Error("publishing event")
		}
		s.pending.Done()
	}
}

func (s *Service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	if c == nil {
		// Reserved: its Create has not returned yet.
		return nil, fmt.Errorf("task %q is being created: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *Service) process(id, execID string) (*container, *taskProcess, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	return c, p, err
}

// stateDirName is a short, stable directory name for a container: the
// VMM's sockets live in it and must fit a unix socket path.
func stateDirName(ns, id string) string {
	h := sha256.Sum256([]byte(ns + "/" + id))
	return "c" + hex.EncodeToString(h[:8])
}

// Create boots the container's VM and creates its process, not started.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	defer func() { retErr = toGRPCCreate(retErr) }()
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, fmt.Errorf("task %q: restoring a checkpoint: %w", r.ID, errdefs.ErrNotImplemented)
	}
	s.mu.Lock()
	if _, ok := s.containers[r.ID]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("task %q: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	// Claim the id while the VM boots.
	s.containers[r.ID] = nil
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			delete(s.containers, r.ID)
			s.mu.Unlock()
		}
	}()
	c, err := s.create(ctx, r)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	return &taskAPI.CreateTaskResponse{Pid: c.init.pid}, nil
}

func (s *Service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *container, retErr error) {
	opts, err := optionsOf(r.Options)
	if err != nil {
		return nil, err
	}
	cfg, err := resolveConfig(opts)
	if err != nil {
		return nil, err
	}
	name := stateDirName(s.ns, r.ID)
	rec := &record{StateDir: filepath.Join(shimRoot(cfg), name)}
	c := &container{id: r.ID, bundle: r.Bundle, rec: rec, execs: map[string]*taskProcess{}}
	defer func() {
		if retErr != nil {
			if err := rec.cleanup(r.Bundle); err != nil {
				log.G(ctx).WithError(err).Warnf("task %q: cleaning up after a failed create", r.ID)
			}
		}
	}()
	if err := os.MkdirAll(rec.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("task %q: creating state dir: %w", r.ID, err)
	}
	if err := rec.save(r.Bundle); err != nil {
		return nil, err
	}
	var ms []mount.Mount
	if len(r.Rootfs) > 0 {
		ms = make([]mount.Mount, 0, len(r.Rootfs))
		for _, m := range r.Rootfs {
			ms = append(ms, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
		}
		rec.Rootfs = true
		if err := rec.save(r.Bundle); err != nil {
			return nil, err
		}
		if err := mountRootfs(ms, filepath.Join(r.Bundle, "rootfs")); err != nil {
			return nil, fmt.Errorf("task %q: %w", r.ID, err)
		}
	}
	b, err := bundle.Load(r.Bundle)
	if err != nil {
		return nil, err
	}
	// An image's layers build the same disk every time: cache it.
	b.CacheKey = snapshotKey(ms)
	c.spec = b.Spec
	if b.Spec.Process == nil {
		return nil, fmt.Errorf("task %q: the spec has no process: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	if b.Spec.Process.Terminal != r.Terminal {
		return nil, fmt.Errorf("task %q: the request's terminal (%v) differs from the spec's process.terminal (%v): %w", r.ID, r.Terminal, b.Spec.Process.Terminal, errdefs.ErrInvalidArgument)
	}
	if err := s.newNetns(b.Spec, rec, r.Bundle); err != nil {
		return nil, fmt.Errorf("task %q: %w", r.ID, err)
	}
	// runtime.md "Lifecycle" steps 4-5: prestart and createRuntime hooks
	// run once the runtime environment exists: here the network namespace
	// nerdctl's CNI hook fills before the VM takes it over.
	for _, stage := range []string{runtime.HookPrestart, runtime.HookCreateRuntime} {
		if err := c.runHooks(ctx, stage, specs.StateCreating, os.Getpid()); err != nil {
			return nil, err
		}
	}
	c.memMiB, c.cpus = runtime.VMSize(cfg, b.Spec)
	vm, err := s.vmFor(ctx, cfg, b, r.ID, name, rec.StateDir)
	if err != nil {
		return nil, fmt.Errorf("task %q: %w", r.ID, err)
	}
	c.vm = vm
	rec.Disk = vm.Disk()
	if !c.isMember() {
		rec.VMMPid = vm.VMPid()
	}
	defer func() {
		if retErr != nil {
			if err := vm.Shutdown(context.WithoutCancel(ctx), 5*time.Second); err != nil {
				log.G(ctx).WithError(err).Warnf("task %q: stopping the VM after a failed create", r.ID)
			}
			s.mu.Lock()
			delete(s.pods, r.ID)
			s.mu.Unlock()
		}
	}()
	if err := rec.save(r.Bundle); err != nil {
		return nil, err
	}
	if err := c.runHooks(ctx, runtime.HookCreateContainer, specs.StateCreated, vm.VMPid()); err != nil {
		return nil, err
	}
	gp, err := vm.CreateProcess(ctx, r.ID, b.Spec.Process)
	if err != nil {
		return nil, err
	}
	// The task's pid: its view process (view_linux.go), not the VMM.
	netns, _ := runtime.NetnsPath(b.Spec)
	v, err := s.startView(b.Rootfs, b.Spec.Mounts, netns)
	if err != nil {
		_ = gp.Signal(ctx, 9, false)
		return nil, fmt.Errorf("task %q: %w", r.ID, err)
	}
	c.view = v
	defer func() {
		if retErr != nil {
			_ = v.Stop()
		}
	}()
	paths := stdioPaths{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}
	pio, err := openStdio(ctx, r.ID, s.ns, paths)
	if err != nil {
		_ = gp.Signal(ctx, 9, false)
		return nil, fmt.Errorf("task %q: %w", r.ID, err)
	}
	s.forwardPorts(ctx, c, netns)
	c.init = newTaskProcess(r.ID, "", v.Pid(), gp, paths, pio)
	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         c.init.pid,
	})
	go c.init.run(s.ctx, func() { c.endExecs(s.ctx) }, s.send)
	return c, nil
}

// forwardPorts starts the port forward of a pod sandbox that has a
// network namespace (portforward.go). Without it the pod still runs: the
// CRI's port forward then fails as before, and the log says why.
func (s *Service) forwardPorts(ctx context.Context, c *container, netns string) {
	pod, ok := c.vm.(podVM)
	if !ok || netns == "" || c.spec.Annotations[annotationContainerType] != "sandbox" {
		return
	}
	ln, err := s.listenPorts(netns)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("pod sandbox %q: no port forward", c.id)
		return
	}
	c.ports = startPortForward(s.ctx, c.id, ln, pod.DialPort)
}

// hostNamespaces refuses a CRI pod's request for the node's PID or IPC
// namespace (hostPID, hostIPC): the CRI leaves the namespace out of the
// spec, which would give the pod the VM's namespace, not the node's that
// it asked to see; such a pod belongs on runc. (The node's network is
// refused by the runtime for every engine.)
func hostNamespaces(s *specs.Spec, kind string) error {
	if kind == "" || s.Linux == nil {
		return nil
	}
	for _, t := range []struct {
		ns     specs.LinuxNamespaceType
		option string
	}{{specs.PIDNamespace, "hostPID"}, {specs.IPCNamespace, "hostIPC"}} {
		if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t.ns }) {
			return fmt.Errorf("%w: the pod asks for the node's %s namespace (%s: true), which a VM cannot share: run it with runc",
				runtime.ErrUnsupported, t.ns, t.option)
		}
	}
	return nil
}

// vmFor boots the container's VM, or for a pod's container joins the
// sandbox's VM (design section 7: one VM per pod).
func (s *Service) vmFor(ctx context.Context, cfg runtime.Config, b *bundle.Bundle, id, name, stateDir string) (sandbox, error) {
	kind, sandboxID := b.Spec.Annotations[annotationContainerType], b.Spec.Annotations[annotationSandboxID]
	if err := hostNamespaces(b.Spec, kind); err != nil {
		return nil, err
	}
	if kind == "container" && sandboxID != "" {
		s.mu.Lock()
		pod := s.pods[sandboxID]
		s.mu.Unlock()
		if pod == nil {
			return nil, fmt.Errorf("pod sandbox %q has no VM in this shim: %w", sandboxID, errdefs.ErrFailedPrecondition)
		}
		return pod.AddMember(ctx, cfg, b, id)
	}
	vm, err := s.boot(ctx, cfg, b, name, stateDir, kind == "sandbox")
	if err != nil {
		return nil, err
	}
	if kind == "sandbox" {
		pod, ok := vm.(podVM)
		if !ok {
			_ = vm.Shutdown(context.WithoutCancel(ctx), 5*time.Second)
			return nil, fmt.Errorf("pod sandbox %q: its VM cannot take members", id)
		}
		s.mu.Lock()
		s.pods[id] = pod
		s.mu.Unlock()
	}
	return vm, nil
}

// newNetns gives a spec that asks for a new network namespace one the
// shim made, so that hooks (nerdctl's CNI) configure it before the VM
// takes it over; the VMM runs inside it.
func (s *Service) newNetns(sp *specs.Spec, rec *record, bundleDir string) error {
	if sp.Linux == nil {
		return nil
	}
	for i, ns := range sp.Linux.Namespaces {
		if ns.Type != specs.NetworkNamespace || ns.Path != "" {
			continue
		}
		path := filepath.Join(rec.StateDir, "netns")
		if err := network.NewNetns(path); err != nil {
			return err
		}
		rec.Netns = path
		if err := rec.save(bundleDir); err != nil {
			return err
		}
		sp.Linux.Namespaces[i].Path = path
	}
	return nil
}

// Start starts the init or an exec.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (_ *taskAPI.StartResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.ExecID == "" {
		// Lifecycle step 7: startContainer hooks (on the host: the guest
		// has no hook runner).
		if err := c.runHooks(ctx, runtime.HookStartContainer, specs.StateCreated, int(p.pid)); err != nil {
			_ = p.kill(ctx, 9, true)
			return nil, err
		}
	} else if c.init.hasExited() {
		return nil, fmt.Errorf("%s: the task has exited: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if err := p.start(ctx, s.send); err != nil {
		return nil, err
	}
	if r.ExecID == "" {
		// Step 9: a poststart failure MUST stop the container.
		if err := c.runHooks(ctx, runtime.HookPoststart, specs.StateRunning, int(p.pid)); err != nil {
			_ = p.kill(ctx, 9, true)
			return nil, err
		}
	}
	return &taskAPI.StartResponse{Pid: p.pid}, nil
}

// Delete removes an exec, or the task with its VM.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (_ *taskAPI.DeleteResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st := p.status(false)
	if st == task.Status_RUNNING {
		return nil, fmt.Errorf("%s is running: stop it before delete: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if st == task.Status_CREATED {
		// Never started: end it.
		_ = p.gp.Signal(ctx, 9, false)
		if !p.hasExitedWithin(30 * time.Second) {
			return nil, fmt.Errorf("%s did not end after SIGKILL", p.name())
		}
	}
	if !p.waitIO(ioDrainTimeout) {
		log.G(ctx).Warnf("%s: output not drained after %s; deleting", p.name(), ioDrainTimeout)
	}
	status, at := p.exit()
	resp := &taskAPI.DeleteResponse{Pid: p.pid, ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}
	if r.ExecID != "" {
		c.mu.Lock()
		delete(c.execs, r.ExecID)
		c.mu.Unlock()
		return resp, nil
	}
	if err := s.teardown(ctx, c); err != nil {
		return nil, err
	}
	s.mu.Lock()
	delete(s.containers, r.ID)
	delete(s.pods, r.ID)
	s.mu.Unlock()
	s.send(&eventstypes.TaskDelete{ContainerID: r.ID, ID: r.ID, Pid: p.pid, ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)})
	return resp, nil
}

// teardown stops the VM, runs the poststop hooks and removes what the
// container held (network namespace, rootfs mount, disk, state).
func (s *Service) teardown(ctx context.Context, c *container) error {
	var errs []error
	if c.ports != nil {
		// First, while the VM still closes its ends.
		if err := c.ports.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.vm.Shutdown(context.WithoutCancel(ctx), 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if c.view != nil {
		if err := c.view.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("task %q: %w", c.id, err))
		}
	}
	// Lifecycle step 12: poststop hooks; failures are logged, the
	// deletion goes on.
	if err := c.runHooks(ctx, runtime.HookPoststop, specs.StateStopped, 0); err != nil {
		log.G(ctx).WithError(err).Warnf("task %q: poststop hook", c.id)
	}
	if err := c.rec.cleanup(c.bundle); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("deleting task %q: %w", c.id, errors.Join(errs...))
	}
	return nil
}

// Exec creates an additional process in the task's VM, not started.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	if st := c.init.status(false); st != task.Status_RUNNING {
		return nil, fmt.Errorf("exec %q in task %q: the task is %s, not running: %w", r.ExecID, r.ID, statusName(st), errdefs.ErrFailedPrecondition)
	}
	var ps specs.Process
	if r.Spec == nil || json.Unmarshal(r.Spec.GetValue(), &ps) != nil {
		return nil, fmt.Errorf("exec %q in task %q: the process spec is missing or not JSON: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	if len(ps.Args) == 0 {
		return nil, fmt.Errorf("exec %q in task %q: the process has no args: %w", r.ExecID, r.ID, errdefs.ErrInvalidArgument)
	}
	if ps.Terminal != r.Terminal {
		ps.Terminal = r.Terminal
	}
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %q in task %q: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists)
	}
	c.execs[r.ExecID] = nil
	c.mu.Unlock()
	p, err := s.newExec(ctx, c, r, &ps)
	c.mu.Lock()
	if err != nil {
		delete(c.execs, r.ExecID)
	} else {
		c.execs[r.ExecID] = p
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.send(&eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	go p.run(s.ctx, nil, s.send)
	return &emptypb.Empty{}, nil
}

func (s *Service) newExec(ctx context.Context, c *container, r *taskAPI.ExecProcessRequest, ps *specs.Process) (*taskProcess, error) {
	gp, err := c.vm.CreateProcess(ctx, r.ID+".exec."+r.ExecID, ps)
	if err != nil {
		return nil, err
	}
	paths := stdioPaths{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal}
	pio, err := openStdio(ctx, r.ID, s.ns, paths)
	if err != nil {
		_ = gp.Signal(ctx, 9, false)
		return nil, fmt.Errorf("exec %q in task %q: %w", r.ExecID, r.ID, err)
	}
	return newTaskProcess(r.ID, r.ExecID, gp.Pid(), gp, paths, pio), nil
}

// ResizePty sets a process's terminal size.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if !p.stdio.terminal {
		return nil, fmt.Errorf("%s has no terminal: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	if err := p.gp.Resize(ctx, r.Width, r.Height); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// State reports a process's status and exit.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (_ *taskAPI.StateResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	resp := &taskAPI.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: c.bundle, Pid: p.pid, Status: p.status(c.isPaused()),
		Stdin: p.stdio.stdin, Stdout: p.stdio.stdout, Stderr: p.stdio.stderr, Terminal: p.stdio.terminal,
	}
	if p.hasEnded() {
		status, at := p.exit()
		resp.ExitStatus, resp.ExitedAt = uint32(status), timestamppb.New(at)
	}
	return resp, nil
}

// Pause freezes the task: its VM, or in a pod's VM its processes alone.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	return s.freeze(ctx, r.ID, true)
}

// Resume thaws the task's VM.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	return s.freeze(ctx, r.ID, false)
}

func (s *Service) freeze(ctx context.Context, id string, pause bool) (*emptypb.Empty, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.init.hasExited() {
		return nil, fmt.Errorf("task %q has exited: %w", id, errdefs.ErrFailedPrecondition)
	}
	if c.paused == pause {
		if pause {
			return nil, fmt.Errorf("task %q is already paused: %w", id, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("task %q is not paused: %w", id, errdefs.ErrFailedPrecondition)
	}
	if pause {
		if err := c.vm.Pause(ctx); err != nil {
			return nil, err
		}
		s.send(&eventstypes.TaskPaused{ContainerID: id})
	} else {
		if err := c.vm.Resume(ctx); err != nil {
			return nil, err
		}
		s.send(&eventstypes.TaskResumed{ContainerID: id})
	}
	c.paused = pause
	return &emptypb.Empty{}, nil
}

// Kill signals the init or an exec; with all, every process of the task.
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.kill(ctx, r.Signal, r.All && r.ExecID == ""); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Pids lists the guest's processes; execs carry their exec id.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (_ *taskAPI.PidsResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	procs, err := c.vm.Processes(ctx)
	if err != nil {
		return nil, err
	}
	execOf := map[uint32]string{}
	c.mu.Lock()
	for id, p := range c.execs {
		if p != nil {
			execOf[p.gp.Pid()] = id
		}
	}
	c.mu.Unlock()
	resp := &taskAPI.PidsResponse{}
	for _, gp := range procs {
		pi := &task.ProcessInfo{Pid: gp.Pid}
		if id, ok := execOf[gp.Pid]; ok {
			a, err := typeurl.MarshalAnyToProto(&runcoptions.ProcessDetails{ExecID: id})
			if err != nil {
				return nil, err
			}
			pi.Info = a
		}
		resp.Processes = append(resp.Processes, pi)
	}
	return resp, nil
}

// CloseIO closes a process's stdin: the guest process reads end of file.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		if err := p.io.closeStdin(); err != nil {
			return nil, fmt.Errorf("%s: closing stdin: %w", p.name(), err)
		}
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint is not implemented: a VM's memory is not checkpointed.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, toGRPC(fmt.Errorf("checkpointing task %q: %w: initos-runtime does not checkpoint VMs", r.ID, errdefs.ErrNotImplemented))
}

// Update writes new limits to the task's cgroup in the guest; what the
// VM cannot give (more memory or CPUs than it booted with, a cpuset, block
// I/O limits) is refused, naming each.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	var res specs.LinuxResources
	if r.Resources != nil {
		if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
			return nil, fmt.Errorf("updating task %q: resources are not LinuxResources JSON: %w: %w", r.ID, errdefs.ErrInvalidArgument, err)
		}
	}
	limits, err := runtime.PlanUpdate(r.ID, c.memMiB, c.cpus, &res)
	if err != nil {
		return nil, err
	}
	if limits != nil {
		if err := c.vm.UpdateLimits(ctx, limits); err != nil {
			return nil, err
		}
	}
	return &emptypb.Empty{}, nil
}

// Wait blocks until the process has exited.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (_ *taskAPI.WaitResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	status, at := p.exit()
	return &taskAPI.WaitResponse{ExitStatus: uint32(status), ExitedAt: timestamppb.New(at)}, nil
}

// Stats reports the container's cgroup in the guest as cgroup v2
// metrics; a guest without cgroups gets the VM's usage as the host sees
// the VMM instead.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (_ *taskAPI.StatsResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, err := s.container(r.ID)
	if err != nil {
		return nil, err
	}
	var m *stats.Metrics
	if gs, err := c.vm.GuestStats(ctx); err == nil {
		m = &stats.Metrics{
			CPU:    &stats.CPUStat{UsageUsec: gs.CpuUsageUsec, UserUsec: gs.CpuUserUsec, SystemUsec: gs.CpuSystemUsec},
			Memory: &stats.MemoryStat{Usage: gs.MemoryUsageBytes, UsageLimit: gs.MemoryLimitBytes, Anon: gs.MemoryAnonBytes, File: gs.MemoryFileBytes},
			Pids:   &stats.PidsStat{Current: gs.PidsCurrent},
			// kubelet's and CRI's container_oom_events_total.
			MemoryEvents: &stats.MemoryEvents{Oom: gs.MemoryOomEvents, OomKill: gs.MemoryOomKillEvents},
		}
	} else {
		log.G(ctx).WithError(err).Debugf("task %q: no guest stats, reporting the VMM's usage", r.ID)
		cpu, rss, err := c.vm.Usage()
		if err != nil {
			return nil, err
		}
		m = &stats.Metrics{
			CPU:    &stats.CPUStat{UsageUsec: cpu / 1000},
			Memory: &stats.MemoryStat{Usage: rss, UsageLimit: uint64(c.memMiB) << 20},
		}
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, err
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

// Connect reports the shim's and the task's pids.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: Version}
	if c, err := s.container(r.ID); err == nil && c != nil {
		resp.TaskPid = c.init.pid
	}
	return resp, nil
}

// Shutdown ends the shim server once it has no task left (or now).
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 && !r.Now {
		return &emptypb.Empty{}, nil
	}
	published := make(chan struct{})
	go func() {
		s.pending.Wait()
		close(published)
	}()
	select {
	case <-published:
	case <-time.After(eventsDrainTimeout):
		log.G(ctx).Warnf("shutting down with events not yet published after %s", eventsDrainTimeout)
	}
	s.sd.Shutdown()
	return &emptypb.Empty{}, nil
}

func statusName(st task.Status) string {
	switch st {
	case task.Status_CREATED:
		return "created"
	case task.Status_RUNNING:
		return "running"
	case task.Status_STOPPED:
		return "stopped"
	case task.Status_PAUSED:
		return "paused"
	}
	return "unknown"
}
