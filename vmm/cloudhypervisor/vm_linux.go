package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// Defaults of Options.
const (
	DefaultBinary       = "cloud-hypervisor"
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 10 * time.Second
)

// Options are the host side of a cloud-hypervisor VM; zero values mean
// defaults.
type Options struct {
	Binary         string        // default DefaultBinary from PATH
	Virtiofsd      string        // default vmm.FindVirtiofsd
	VirtiofsdCache string        // where virtiofsd's dialect is kept between starts; "": probed each start
	Accel          *vmm.Accel    // default vmm.DetectAccel(); must be KVM
	StartTimeout   time.Duration // Start's bound on the API answering
	StopTimeout    time.Duration // Stop's bound on a graceful shutdown before SIGKILL
}

// VM is one cloud-hypervisor process. Its methods are safe for concurrent
// use; Start succeeds at most once.
type VM struct {
	cfg vmm.Config
	dev vmm.Config // cfg with the modules share (deviceConfig): what the supervisor serves
	api *apiClient
	sup vmm.Supervisor

	// A clone's restore (restore, polled by Start): resumed says its
	// guest runs; added is how many of its disks, then shares, then NICs
	// are hot-added.
	resumed bool
	added   int
}

// New checks cfg and the host (binaries, KVM); nothing runs yet.
func New(cfg vmm.Config, opts Options) (*VM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if opts.Accel == nil {
		a := vmm.DetectAccel()
		opts.Accel = &a
	}
	if opts.Accel.Name != vmm.AccelKVM {
		return nil, fmt.Errorf("vm %q: cloud-hypervisor needs KVM: %w: %s", cfg.ID, vmm.ErrNoKVM, opts.Accel.Reason)
	}
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("finding cloud-hypervisor: %w", err)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	v := &VM{cfg: cfg, dev: deviceConfig(cfg), api: newAPIClient(cfg.SocketPath(apiSocket))}
	v.sup = vmm.Supervisor{
		Cfg:          &v.dev,
		Name:         "cloud-hypervisor",
		Bin:          bin,
		Args:         v.Args(),
		Log:          cfg.SocketPath(chLog),
		Sockets:      []string{cfg.SocketPath(apiSocket), cfg.SocketPath(vsockSocket)},
		StartTimeout: opts.StartTimeout,
		StopTimeout:  opts.StopTimeout,
		Ready:        v.ready,
		Shutdown: func(ctx context.Context) error {
			// vm.shutdown fails when the guest is down already;
			// vmm.shutdown is what ends the process.
			_ = v.api.shutdownVM(ctx)
			return v.api.shutdownVMM(ctx)
		},
	}
	// A template has no shares: its clones add theirs.
	if len(v.dev.Shares) > 0 && cfg.Template == nil {
		v.sup.VirtiofsdCache = opts.VirtiofsdCache
		if v.sup.Virtiofsd, err = vmm.FindVirtiofsd(opts.Virtiofsd); err != nil {
			return nil, fmt.Errorf("vm %q: virtiofs shares: %w", cfg.ID, err)
		}
	}
	return v, nil
}

// Args is the cloud-hypervisor command line (without the binary).
func (v *VM) Args() []string { return buildArgs(&v.cfg) }

// ModuleGroups are the initrd module groups the guest needs.
func (v *VM) ModuleGroups() []string { return ModuleGroups(&v.cfg) }

// Start launches cloud-hypervisor (and virtiofsd for a share) and returns
// once its API answers vmm.ping; the guest may still be booting. A clone
// (Config.RestoreFrom) is restored instead, and Start returns once it
// runs with its own devices (restore). On failure everything it started
// is killed and its sockets are removed.
func (v *VM) Start(ctx context.Context) error {
	if v.cfg.RestoreFrom == nil {
		return v.sup.Start(ctx)
	}
	if err := writeRestoreDir(&v.cfg); err != nil {
		return fmt.Errorf("vm %q: restoring %q: %w", v.cfg.ID, v.cfg.RestoreFrom.State, err)
	}
	// Read by then: cloud-hypervisor copied memory-ranges into the guest.
	defer os.RemoveAll(v.cfg.SocketPath(restoreDir))
	return v.sup.Start(ctx)
}

func (v *VM) ready(ctx context.Context) error {
	if v.cfg.RestoreFrom != nil {
		return v.restore(ctx)
	}
	return v.api.ping(ctx)
}

// Stop ends cloud-hypervisor: PUT vm.shutdown, then PUT vmm.shutdown
// (SIGTERM if that fails), SIGKILL when it has not exited within
// StopTimeout or ctx; then virtiofsd; then it removes the sockets.
// Stopping a VM that never started or already stopped is a no-op.
func (v *VM) Stop(ctx context.Context) error { return v.sup.Stop(ctx) }

// Kill ends the VMM at once (vmm.Supervisor.Kill): for a quiesced guest.
func (v *VM) Kill() error { return v.sup.Kill() }

// Wait blocks until cloud-hypervisor exited. It returns nil when it exited
// cleanly (the guest powered off) or because Stop ended it, else an error
// wrapping vmm.ErrVMExited with its log's and the console's last lines.
func (v *VM) Wait() error { return v.sup.Wait() }

// Pid is cloud-hypervisor's process id, 0 before Start.
func (v *VM) Pid() int { return v.sup.Pid() }

// SetOOMScoreAdj changes the host OOM killer's adjustment of the VMM and
// its virtiofsd (vmm.Supervisor.SetOOMScoreAdj).
func (v *VM) SetOOMScoreAdj(adj int) error { return v.sup.SetOOMScoreAdj(adj) }

// DialAgent connects to the agent's vsock port (AgentPort) over hybrid
// vsock, retrying until the agent listens or ctx ends.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	p, err := v.sup.Running()
	if err != nil {
		return nil, err
	}
	c, err := dialHybridVsock(ctx, v.cfg.SocketPath(vsockSocket), AgentPort, p.Done())
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, errStopped):
		return nil, v.sup.ExitedError(p)
	case errors.Is(err, vmm.ErrAgentTimeout):
		return nil, fmt.Errorf("vm %q: %w; last console output:\n%s", v.cfg.ID, err, vmm.ConsoleTail(v.cfg.ConsoleLog, 20))
	}
	return nil, fmt.Errorf("vm %q: %w", v.cfg.ID, err)
}

// Pause pauses the VM (PUT vm.pause).
func (v *VM) Pause(ctx context.Context) error { return v.control(ctx, "pause", v.api.pause) }

// Resume resumes it (PUT vm.resume).
func (v *VM) Resume(ctx context.Context) error { return v.control(ctx, "resume", v.api.resume) }

func (v *VM) control(ctx context.Context, what string, f func(context.Context) error) error {
	p, err := v.sup.Running()
	if err != nil {
		return err
	}
	if p.Exited() {
		return v.sup.ExitedError(p)
	}
	if err := f(ctx); err != nil {
		return fmt.Errorf("vm %q: %s: %w", v.cfg.ID, what, err)
	}
	return nil
}
