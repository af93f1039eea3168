package guestagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// RootfsDir is where Setup mounts the container's root filesystem.
const RootfsDir = "/run/initos/rootfs"

// serviceConfig tunes a Service.
type serviceConfig struct {
	Rootfs        string
	KernelRelease string
	// DeviceWait bounds the wait for the root device node.
	DeviceWait time.Duration
	// TermGrace is how long Shutdown waits after SIGTERM, and again after
	// SIGKILL.
	TermGrace time.Duration
	// PowerOffDelay lets Shutdown's reply leave before the power goes.
	PowerOffDelay time.Duration
	// OutputLimit bounds the buffered output per stream.
	OutputLimit int
	// ResolvConf, from xip='s DNS, becomes the container's
	// /etc/resolv.conf unless the spec mounts one.
	ResolvConf string
}

func defaultServiceConfig() serviceConfig {
	return serviceConfig{
		Rootfs:        RootfsDir,
		KernelRelease: kernelRelease(),
		DeviceWait:    10 * time.Second,
		TermGrace:     2 * time.Second,
		PowerOffDelay: 100 * time.Millisecond,
		OutputLimit:   DefaultOutputLimit,
	}
}

// guestState is where the guest is in its life.
type guestState string

const (
	guestBooted       guestState = "booted"
	guestSettingUp    guestState = "setting up"
	guestSetUp        guestState = "set up"
	guestShuttingDown guestState = "shutting down"
)

// Service implements agentapi.AgentService.
type Service struct {
	cfg      serviceConfig
	sys      system
	launcher launcher
	log      *logger
	self     int

	// onExit, if set, runs after a process has exited (sidecar mode powers
	// off when its program ends).
	onExit func(id string, e exitInfo)

	mu    sync.Mutex
	state guestState
	// containers are the set-up containers by id ("" is the default
	// one); a nil entry is one being set up.
	containers map[string]*guestContainer
	// vmMounted are the mounts of the whole VM (the share), unmounted
	// after every container's.
	vmMounted []string
	// shmMu serializes the mounting of shared tmpfs (bindSharedShm).
	shmMu     sync.Mutex
	procs     map[string]*process
	selfPidns string
	// boot is the agent's boot trace (nil until the agent serves).
	boot *bootTrace

	cgroupOnce sync.Once
	cgroups    bool // cgroup v2 is mounted: containers have cgroups
	// devices keeps the device programs loaded; setDevices is its set
	// (tests replace it).
	devices    *devicePrograms
	setDevices func(dir string, rules []*devconfig.Rule) error

	// net configures the NIC in the late network mode (ConfigureNetwork).
	net *lateNet
	// pid1 is the handed-off PID 1 the default container's first process
	// becomes (nil: processes are the agent's children; setPID1).
	pid1 *pid1
	// ports are the connections of the host's port forward.
	ports *portConns
}

var _ agentapi.AgentService = (*Service)(nil)

func newService(cfg serviceConfig, sys system, l launcher, log *logger) *Service {
	devices := newDevicePrograms(setCgroupDevices)
	return &Service{
		cfg:        cfg,
		sys:        sys,
		launcher:   l,
		log:        log,
		self:       os.Getpid(),
		state:      guestBooted,
		procs:      make(map[string]*process),
		containers: make(map[string]*guestContainer),
		selfPidns:  pidnsOf(sys, os.Getpid()),
		net:        defaultLateNet(log),
		devices:    devices,
		setDevices: devices.set,
		ports:      newPortConns(),
	}
}

// setReady gives Ping the boot trace, which has recorded the moment the
// agent serves.
func (s *Service) setReady(t *bootTrace) {
	s.mu.Lock()
	s.boot = t
	s.mu.Unlock()
}

// Bounds of Restored's entropy.
const (
	minRestoreEntropy = 32
	maxRestoreEntropy = 512
)

// Restored makes a VM restored from a template a clone of its own: the
// clock, stopped at the template's save, is set to the host's, and the
// random generator, whose state every clone of the template shares, is
// reseeded from the host's randomness. The host calls it too when the
// guest's clock is behind for another reason: a VM resumed after a pause
// of the whole VM, a step of the host's clock (runtime/clock.go).
func (s *Service) Restored(_ context.Context, r *agentapi.RestoredRequest) (*agentapi.Empty, error) {
	if n := len(r.Entropy); n < minRestoreEntropy || n > maxRestoreEntropy {
		return nil, errorf(ErrInvalidArgument, "restored: %d bytes of entropy, want %d to %d", n, minRestoreEntropy, maxRestoreEntropy)
	}
	if r.UnixNanos <= 0 {
		return nil, errorf(ErrInvalidArgument, "restored: clock %d is not a time after the epoch", r.UnixNanos)
	}
	if err := s.sys.Reseed(r.Entropy); err != nil {
		return nil, err
	}
	if err := s.sys.SetClock(time.Unix(0, r.UnixNanos)); err != nil {
		return nil, err
	}
	s.log.Debugf("restored: clock set to the host's, random generator reseeded")
	return &agentapi.Empty{}, nil
}

// Ping reports the agent's protocol version, the kernel release and when
// the agent became ready.
func (s *Service) Ping(context.Context, *agentapi.PingRequest) (*agentapi.PingResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &agentapi.PingResponse{
		AgentVersion:  agentapi.Version,
		KernelRelease: s.cfg.KernelRelease,
	}
	if s.boot != nil {
		s.boot.fill(r)
	}
	return r, nil
}

// validateProcess checks what the runtime-spec requires of a process.
func validateProcess(p *specs.Process) error {
	// config.md process.args: "at least one entry is REQUIRED (non-Windows)".
	if len(p.Args) == 0 || p.Args[0] == "" {
		return errorf(ErrInvalidArgument, "process args must not be empty")
	}
	// config.md process.cwd: "This value MUST be an absolute path."
	if !filepath.IsAbs(p.Cwd) {
		return errorf(ErrInvalidArgument, "process cwd %q is not an absolute path", p.Cwd)
	}
	seen := map[string]bool{}
	for _, r := range p.Rlimits {
		// config.md rlimits: "The runtime MUST generate an error for any
		// values which cannot be mapped to a relevant kernel interface."
		if _, ok := procinit.RlimitResources[r.Type]; !ok {
			return errorf(ErrInvalidArgument, "rlimit %q is not a Linux resource limit", r.Type)
		}
		// "If rlimits contains duplicated entries with same type, the
		// runtime MUST generate an error."
		if seen[r.Type] {
			return errorf(ErrInvalidArgument, "rlimit %q is given twice", r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return errorf(ErrInvalidArgument, "rlimit %q: soft %d above hard %d", r.Type, r.Soft, r.Hard)
		}
	}
	return nil
}

// CreateProcess prepares a process up to its exec and returns its pid.
func (s *Service) CreateProcess(ctx context.Context, req *agentapi.CreateProcessRequest) (*agentapi.CreateProcessResponse, error) {
	if req.Id == "" {
		return nil, errorf(ErrInvalidArgument, "creating a process: id is empty")
	}
	var spec specs.Process
	if err := json.Unmarshal(req.ProcessJson, &spec); err != nil {
		return nil, errorf(ErrInvalidArgument, "creating process %q: process_json: %w", req.Id, err)
	}
	if err := validateProcess(&spec); err != nil {
		return nil, fmt.Errorf("creating process %q: %w", req.Id, err)
	}
	p, err := s.createProcess(ctx, req.ContainerId, req.Id, &spec, nil)
	if err != nil {
		return nil, err
	}
	return &agentapi.CreateProcessResponse{Pid: uint32(p.pid)}, nil
}

// createProcess launches id in container cid and records it; console,
// when set, is its stdio.
func (s *Service) createProcess(ctx context.Context, cid, id string, spec *specs.Process, console *os.File) (*process, error) {
	s.mu.Lock()
	if s.state != guestSetUp {
		state := s.state
		s.mu.Unlock()
		return nil, errorf(ErrFailedPrecondition, "creating process %q: the guest is %s, Setup must come first", id, state)
	}
	c := s.containers[cid]
	if c == nil {
		s.mu.Unlock()
		return nil, errorf(ErrFailedPrecondition, "creating process %q: container %q is not set up", id, cid)
	}
	if _, ok := s.procs[id]; ok {
		s.mu.Unlock()
		return nil, errorf(ErrAlreadyExists, "creating process %q: the id is taken", id)
	}
	s.procs[id] = nil // reserved while launching
	req := launchRequest{ID: id, Process: spec, Rootfs: c.rootfs, Console: console, Seccomp: c.seccomp, SeccompFlags: c.seccompFlags,
		CgroupMount: c.cgroupMount, CgroupReadonly: c.cgroupReadonly, RootPropagation: c.rootPropagation}
	if s.cgroups {
		req.CgroupProcs = filepath.Join(cgroupOf(cid), "cgroup.procs")
	}
	if s.pid1 != nil && cid == "" && c.mainID == "" && s.pid1.claim() {
		req.PID1 = s.pid1
	}
	if err := s.namespacesOf(c, &req); err != nil {
		delete(s.procs, id)
		s.mu.Unlock()
		return nil, fmt.Errorf("creating process %q: %w", id, err)
	}
	s.mu.Unlock()

	h, err := s.launcher.Launch(ctx, req)
	if err != nil {
		s.mu.Lock()
		delete(s.procs, id)
		s.mu.Unlock()
		return nil, fmt.Errorf("creating process %q: %w", id, err)
	}
	p := &process{
		id:        id,
		container: cid,
		pid:       h.Pid,
		terminal:  spec.Terminal,
		h:         h,
		state:     procCreated,
		done:      make(chan struct{}),
		oomKills:  s.oomKills(cid),
	}
	p.stdout = s.startPump(h.Stdout)
	p.stderr = s.startPump(h.Stderr)

	// The first process of a container with a PID namespace of its own,
	// or in the default container's, names the namespace of its processes.
	newPidns := slices.Contains(req.NewNamespaces, "pid") || c.mainID == "" && c.joinsPidns()
	pidns := ""
	if newPidns {
		pidns = pidnsOf(s.sys, p.pid)
	}
	s.mu.Lock()
	s.procs[id] = p
	if c.mainID == "" {
		c.mainID = id // the first process is the container's
		if newPidns {
			c.pidns = pidns
		}
	}
	s.mu.Unlock()
	go s.waitExit(p)
	s.log.Debugf("process %q created: pid %d, args %q", id, p.pid, spec.Args)
	return p, nil
}

// namespacesOf sets the namespaces of the next process of container c in
// req: the first one makes c's own (config-linux.md namespaces: "If a path
// is not specified, the runtime MUST create a new container namespace of
// the given type") and joins the default container's it shares; the later
// ones join the first one's. s.mu is held.
func (s *Service) namespacesOf(c *guestContainer, req *launchRequest) error {
	own := append([]string(nil), c.newNs...)
	if c.ownPidns {
		own = append(own, "pid")
	}
	if c.mainID == "" {
		req.NewNamespaces, req.Hostname, req.Sysctls = own, c.hostname, c.sysctls
		req.Masked, req.Readonly = c.masked, c.readonly
		req.ProcMounts = mountsUnder(c.mounted, filepath.Join(c.rootfs, "proc"))
		if len(c.joinNs) == 0 {
			return nil
		}
		d := s.containers[""]
		var m *process
		if d != nil {
			m = s.procs[d.mainID]
		}
		if m == nil || m.getState() == procExited {
			return errorf(ErrFailedPrecondition, "container %q shares the %s namespaces of the default container, which has no running process", c.id, strings.Join(c.joinNs, " and "))
		}
		req.JoinNamespacesOf, req.JoinNamespaces = m.pid, pidLast(slices.Clone(c.joinNs))
		return nil
	}
	// "pid" last: it only applies to the children of the thread that
	// joins it.
	all := pidLast(append(append([]string(nil), c.joinNs...), own...))
	if len(all) == 0 {
		return nil
	}
	m := s.procs[c.mainID]
	if m == nil || m.getState() == procExited {
		return errorf(ErrFailedPrecondition, "container %q has no running process whose namespaces (%s) it could join", c.id, strings.Join(all, ", "))
	}
	req.JoinNamespacesOf, req.JoinNamespaces = m.pid, all
	return nil
}

// pidLast moves "pid" to the end of namespaces (in place).
func pidLast(namespaces []string) []string {
	if i := slices.Index(namespaces, "pid"); i >= 0 {
		namespaces = append(slices.Delete(namespaces, i, i+1), "pid")
	}
	return namespaces
}

// startPump buffers an output stream; nil gives a stream at EOF.
func (s *Service) startPump(src interface {
	Read([]byte) (int, error)
	Close() error
}) *outputBuffer {
	if src == nil {
		return newClosedOutputBuffer()
	}
	b := newOutputBuffer(s.cfg.OutputLimit)
	go func() {
		b.pump(src)
		_ = src.Close()
	}()
	return b
}

// waitExit records the exit of p.
func (s *Service) waitExit(p *process) {
	e := <-p.h.Exited
	// Read before done: Wait reports it.
	oom := e.Status == 128+int32(unix.SIGKILL) && s.oomKills(p.container) > p.oomKills
	p.mu.Lock()
	p.state = procExited
	p.exit = e
	p.oomKilled = oom
	p.mu.Unlock()
	close(p.done)
	if p.h.Stdin != nil {
		_ = p.h.Stdin.Close()
	}
	if p.h.Release != nil {
		p.h.Release()
	}
	s.log.Debugf("process %q (pid %d) exited with status %d", p.id, p.pid, e.Status)
	if s.onExit != nil {
		s.onExit(p.id, e)
	}
}

// lookup finds a process by id.
func (s *Service) lookup(op, id string) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[id]
	if p == nil {
		return nil, errorf(ErrNotFound, "%s: process %q not found", op, id)
	}
	return p, nil
}

// StartProcess lets a created process exec.
func (s *Service) StartProcess(ctx context.Context, req *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	p, err := s.lookup("starting", req.Id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.state != procCreated || p.starting {
		state := p.state
		if p.starting {
			state = "starting"
		}
		p.mu.Unlock()
		return nil, errorf(ErrFailedPrecondition, "starting process %q: it is %s, not created", req.Id, state)
	}
	p.starting = true
	p.mu.Unlock()

	err = p.h.Start(ctx)

	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting = false
	if err != nil {
		return nil, fmt.Errorf("starting process %q: %w", req.Id, err)
	}
	if p.state == procCreated {
		p.state = procRunning
	}
	p.startedAt = time.Now()
	return &agentapi.Empty{}, nil
}

// WriteStdin writes all of data to the process's stdin.
func (s *Service) WriteStdin(ctx context.Context, req *agentapi.WriteStdinRequest) (*agentapi.WriteStdinResponse, error) {
	p, err := s.lookup("writing stdin", req.Id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	state, closed := p.state, p.stdinClosed
	p.mu.Unlock()
	switch {
	case p.h.Stdin == nil:
		return nil, errorf(ErrFailedPrecondition, "writing stdin of process %q: its stdin is the console", req.Id)
	case state == procExited:
		return nil, errorf(ErrFailedPrecondition, "writing stdin: process %q has exited", req.Id)
	case closed:
		return nil, errorf(ErrFailedPrecondition, "writing stdin of process %q: stdin is closed", req.Id)
	}
	n, err := p.writeStdin(ctx, req.Data)
	if err != nil {
		return nil, fmt.Errorf("writing stdin of process %q after %d of %d bytes: %w", req.Id, n, len(req.Data), err)
	}
	return &agentapi.WriteStdinResponse{Written: uint32(n)}, nil
}

// CloseStdin closes the process's stdin pipe. With a terminal there is no
// end-of-file to send apart from the line discipline's ^D, which the host
// can write itself: CloseStdin only marks stdin closed, so further writes
// fail.
func (s *Service) CloseStdin(_ context.Context, req *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	p, err := s.lookup("closing stdin", req.Id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	already := p.stdinClosed
	p.stdinClosed = true
	p.mu.Unlock()
	if already || p.h.Stdin == nil || p.terminal {
		return &agentapi.Empty{}, nil
	}
	// Wait for a write in progress so that its bytes come before EOF.
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if err := p.h.Stdin.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return nil, fmt.Errorf("closing stdin of process %q: %w", req.Id, err)
	}
	return &agentapi.Empty{}, nil
}

// readLimit is the reply size for a ReadRequest.
func readLimit(max uint32) int {
	if max == 0 || max > agentapi.MaxReadBytes {
		return agentapi.MaxReadBytes
	}
	return int(max)
}

// ReadStdout returns the next output; empty data means EOF.
func (s *Service) ReadStdout(ctx context.Context, req *agentapi.ReadRequest) (*agentapi.ReadResponse, error) {
	p, err := s.lookup("reading stdout", req.Id)
	if err != nil {
		return nil, err
	}
	data, err := p.stdout.Read(ctx, readLimit(req.MaxBytes))
	if err != nil {
		return nil, fmt.Errorf("reading stdout of process %q: %w", req.Id, err)
	}
	return &agentapi.ReadResponse{Data: data}, nil
}

// ReadStderr returns the next error output; empty data means EOF. With a
// terminal it is at EOF at once.
func (s *Service) ReadStderr(ctx context.Context, req *agentapi.ReadRequest) (*agentapi.ReadResponse, error) {
	p, err := s.lookup("reading stderr", req.Id)
	if err != nil {
		return nil, err
	}
	data, err := p.stderr.Read(ctx, readLimit(req.MaxBytes))
	if err != nil {
		return nil, fmt.Errorf("reading stderr of process %q: %w", req.Id, err)
	}
	return &agentapi.ReadResponse{Data: data}, nil
}

// ResizePty sets the window size of the process's terminal.
func (s *Service) ResizePty(_ context.Context, req *agentapi.ResizePtyRequest) (*agentapi.Empty, error) {
	p, err := s.lookup("resizing the terminal", req.Id)
	if err != nil {
		return nil, err
	}
	if p.h.Resize == nil {
		return nil, errorf(ErrFailedPrecondition, "resizing the terminal of process %q: it has no terminal", req.Id)
	}
	if p.getState() == procExited {
		return nil, errorf(ErrFailedPrecondition, "resizing the terminal: process %q has exited", req.Id)
	}
	if req.Width > 0xffff || req.Height > 0xffff {
		return nil, errorf(ErrInvalidArgument, "resizing the terminal of process %q: %dx%d is too large", req.Id, req.Width, req.Height)
	}
	if err := p.h.Resize(uint16(req.Width), uint16(req.Height)); err != nil {
		return nil, fmt.Errorf("resizing the terminal of process %q: %w", req.Id, err)
	}
	return &agentapi.Empty{}, nil
}

// SignalProcess sends a signal to the process, or with all to every process
// of the guest but the agent (only for the container's main process).
func (s *Service) SignalProcess(_ context.Context, req *agentapi.SignalRequest) (*agentapi.Empty, error) {
	p, err := s.lookup("signalling", req.Id)
	if err != nil {
		return nil, err
	}
	if req.Signal > 64 {
		return nil, errorf(ErrInvalidArgument, "signalling process %q: %d is not a signal", req.Id, req.Signal)
	}
	sig := unix.Signal(req.Signal)
	if req.All {
		s.mu.Lock()
		c := s.containers[p.container]
		main := ""
		if c != nil {
			main = c.mainID
		}
		s.mu.Unlock()
		if c == nil || req.Id != main {
			return nil, errorf(ErrInvalidArgument, "signalling all processes: %q is not the main process %q of container %q", req.Id, main, p.container)
		}
		if err := s.signalAll(c, sig); err != nil {
			return nil, err
		}
		return &agentapi.Empty{}, nil
	}
	if p.getState() == procExited {
		return nil, errorf(ErrFailedPrecondition, "process %q has exited", req.Id)
	}
	s.awaitHandler(p, sig)
	if err := s.kill(p.pid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, errorf(ErrFailedPrecondition, "process %q has exited", req.Id)
		}
		return nil, fmt.Errorf("signalling process %q (pid %d) with %d: %w", req.Id, p.pid, sig, err)
	}
	return &agentapi.Empty{}, nil
}

// userProcs lists the processes of the guest apart from the agent (PID 1,
// or its child with PID 1 handed off, and PID 1's watcher) and kernel
// threads; with c, only those in c's PID namespace (the default
// container's is the agent's own). A handed-off PID 1 is the default
// container's.
func (s *Service) userProcs(c *guestContainer) ([]procInfo, error) {
	all, err := s.sys.ListProcs()
	if err != nil {
		return nil, err
	}
	pid1Listed := s.pid1 != nil && c != nil && c.id == ""
	mine := func(procInfo) bool { return true }
	if c != nil {
		s.mu.Lock()
		shared := s.sharesPidns(c)
		known := map[int]bool{}
		for _, p := range s.procs {
			if p != nil && p.container == c.id {
				known[p.pid] = true
			}
		}
		s.mu.Unlock()
		switch {
		case shared && s.cgroups:
			// Its cgroup, or one below it.
			cg := strings.TrimPrefix(cgroupOf(c.id), cgroupRoot)
			mine = func(p procInfo) bool { return p.Cgroup == cg || strings.HasPrefix(p.Cgroup, cg+"/") }
		case shared:
			// No cgroups to tell them apart: the processes it started.
			mine = func(p procInfo) bool { return known[p.Pid] }
		}
	}
	var out []procInfo
	for _, p := range all {
		if p.Pid == 1 && !pid1Listed || p.Pid == s.self || p.Kernel || s.pid1.isWatcherPid(p.Pid) {
			continue
		}
		if c != nil && (p.Pidns != s.pidnsOfContainer(c) || !mine(p)) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// signalAll sends sig to every user process of c (nil: of the guest);
// ones that are gone meanwhile do not count as failures.
func (s *Service) signalAll(c *guestContainer, sig unix.Signal) error {
	procs, err := s.userProcs(c)
	if err != nil {
		return fmt.Errorf("signalling all processes: %w", err)
	}
	var errs []error
	for _, p := range procs {
		if err := s.kill(p.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signalling pid %d (%s) with %d: %w", p.Pid, p.Comm, sig, err))
		}
	}
	return errors.Join(errs...)
}

// WaitProcess blocks until the process exits, or ctx ends.
func (s *Service) WaitProcess(ctx context.Context, req *agentapi.ProcessRequest) (*agentapi.WaitResponse, error) {
	p, err := s.lookup("waiting for", req.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for process %q: %w", req.Id, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return &agentapi.WaitResponse{ExitStatus: p.exit.Status, ExitedAtUnixNano: p.exit.At.UnixNano(), OomKilled: p.oomKilled}, nil
}

// ListProcesses lists a container's processes (the agent and kernel
// threads never).
func (s *Service) ListProcesses(_ context.Context, req *agentapi.ListProcessesRequest) (*agentapi.ListProcessesResponse, error) {
	s.mu.Lock()
	c := s.containers[req.ContainerId]
	s.mu.Unlock()
	if c == nil && req.ContainerId == "" {
		c = &guestContainer{} // the agent's own PID namespace
	}
	if c == nil {
		return nil, errorf(ErrNotFound, "listing processes: container %q is not set up", req.ContainerId)
	}
	procs, err := s.userProcs(c)
	if err != nil {
		return nil, err
	}
	resp := &agentapi.ListProcessesResponse{}
	if req.Detail {
		boot, err := s.sys.BootTime()
		if err != nil {
			return nil, err
		}
		resp.BootUnixNano = boot.UnixNano()
	}
	size := 0
	for _, p := range procs {
		info := &agentapi.ProcessInfo{
			Pid: uint32(p.Pid), Ppid: uint32(p.Ppid), Comm: p.Comm, Args: p.Args,
		}
		if req.Detail {
			info.Pidns = p.Pidns
			ok, err := s.procDetail(info)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // exited meanwhile
			}
			// An entry's framing (tag and length) is 4 bytes at most.
			if size += proto.Size(info) + 4; size > maxDetailReply {
				resp.Truncated = true
				break
			}
		}
		resp.Processes = append(resp.Processes, info)
	}
	return resp, nil
}

// maxDetailReply bounds a detailed ListProcesses reply below the host's
// bound on it (512 KiB): about 300 processes of a 1.5 KiB status each.
const maxDetailReply = 448 << 10

// procDetail adds p's stat and status (the host reads p's pid in its
// container's PID namespace from status). ok is false when the process has
// exited.
func (s *Service) procDetail(p *agentapi.ProcessInfo) (ok bool, err error) {
	dir := fmt.Sprintf("/proc/%d/", p.Pid)
	stat, err := s.sys.ReadFile(dir + "stat")
	if err != nil {
		if gone(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading %q: %w", dir+"stat", err)
	}
	status, err := s.sys.ReadFile(dir + "status")
	if err != nil {
		if gone(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading %q: %w", dir+"status", err)
	}
	p.Stat, p.Status = string(stat), string(status)
	return true, nil
}

// Shutdown stops every process (TERM, then KILL), syncs, unmounts, replies
// and powers the VM off a moment later.
func (s *Service) Shutdown(context.Context, *agentapi.Empty) (*agentapi.Empty, error) {
	s.mu.Lock()
	if s.state == guestShuttingDown {
		s.mu.Unlock()
		return &agentapi.Empty{}, nil
	}
	s.state = guestShuttingDown
	if s.pid1 != nil {
		// Nothing of the container runs on while the VM goes down.
		if err := s.pid1.freeze(); err != nil {
			s.log.Printf("shutdown: %v", err)
		}
	}
	var mounted []string
	if c := s.containers[""]; c != nil {
		mounted = append(mounted, c.mounted...)
	}
	for id, c := range s.containers {
		if id != "" && c != nil {
			mounted = append(mounted, c.mounted...)
		}
	}
	mounted = append(append([]string(nil), s.vmMounted...), mounted...)
	s.containers = map[string]*guestContainer{}
	s.vmMounted = nil
	s.mu.Unlock()

	s.ports.closeAll()
	s.stopAll()
	s.sys.Sync()
	// What lives on a share or in memory is safe once synced (the shares
	// write through to the host); a filesystem on a block device (the
	// root disk, disk volumes) is unmounted too, so that its image is
	// left clean. Unmounting the rest cost 15-20 ms under TCG.
	if s.blockDeviceMounted() {
		s.unmountAll(mounted)
		s.sys.Sync()
	}
	s.log.Debugf("shutdown: powering off")
	time.AfterFunc(s.cfg.PowerOffDelay, func() {
		if err := s.sys.PowerOff(); err != nil {
			s.log.Printf("power off: %v", err)
		}
	})
	return &agentapi.Empty{}, nil
}

// blockDeviceMounted reports whether the agent's mount namespace has a
// filesystem on a block device (mountinfo's source a /dev node); a
// mountinfo it cannot read counts as yes.
func (s *Service) blockDeviceMounted() bool {
	b, err := s.sys.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		// "... - FSTYPE SOURCE SUPEROPTIONS" (proc_pid_mountinfo(5))
		if _, post, ok := strings.Cut(line, " - "); ok {
			if f := strings.Fields(post); len(f) >= 2 && strings.HasPrefix(f[1], "/dev/") {
				return true
			}
		}
	}
	return false
}

// stopAll sends SIGTERM to every process, waits up to TermGrace for them to
// go, then SIGKILL and waits again.
//
// As the VM's init (no PID 1 handed off) the agent is an ancestor of every
// process left (the end of a container's PID namespace hands its processes
// up to it): it signals them all with one kill(-1) and waits until it has
// no child, instead of reading /proc for each process (under TCG two scans
// of /proc, which lists the kernel's threads too, took 50-60 ms of every
// teardown). With a handed-off PID 1 it lists them.
func (s *Service) stopAll() {
	asInit := s.self == 1 && s.pid1 == nil
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		var err error
		if asInit {
			err = s.sys.KillAll(sig)
		} else {
			err = s.signalAll(nil, sig)
		}
		if err != nil {
			s.log.Printf("shutdown: %v", err)
		}
		deadline := time.Now().Add(s.cfg.TermGrace)
		for {
			left, err := s.processesLeft(asInit)
			if err != nil {
				s.log.Printf("shutdown: %v", err)
				break
			}
			if left == 0 {
				return
			}
			if time.Now().After(deadline) {
				if sig == unix.SIGKILL {
					s.log.Printf("shutdown: %d processes left after SIGKILL", left)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// processesLeft counts the user processes of the guest; as its init, 1
// stands for "some" (a child not yet reaped).
func (s *Service) processesLeft(asInit bool) (int, error) {
	if asInit {
		has, err := s.sys.HasChildren()
		if has {
			return 1, err
		}
		return 0, err
	}
	procs, err := s.userProcs(nil)
	return len(procs), err
}
