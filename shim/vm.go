package shim

import (
	"context"
	"time"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/runtime"
)

// sandbox is what the shim needs of a container's booted VM
// (runtime.Instance); fakes_test.go has a fake.
type sandbox interface {
	CreateProcess(ctx context.Context, id string, p *specs.Process) (guestProcess, error)
	Processes(ctx context.Context) ([]*agentapi.ProcessInfo, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Usage() (cpuNanos, rssBytes uint64, err error)
	GuestStats(ctx context.Context) (*agentapi.StatsResponse, error)
	UpdateLimits(ctx context.Context, l *agentapi.CgroupLimits) error
	Shutdown(ctx context.Context, timeout time.Duration) error
	VMPid() int
	Disk() string
}

// guestProcess is one process in the guest (runtime.Process).
type guestProcess interface {
	Pid() uint32
	Start(ctx context.Context) error
	Signal(ctx context.Context, sig uint32, all bool) error
	Resize(ctx context.Context, width, height uint32) error
	Wait(ctx context.Context) (int, error)
	// OOMKilled says the exit Wait returned was the OOM killer's.
	OOMKilled() bool
	Pump(ctx context.Context, s runtime.Stdio, progress chan<- struct{}) error
}

// podVM is a pod sandbox's VM, which takes the pod's other containers.
type podVM interface {
	sandbox
	AddMember(ctx context.Context, c runtime.Config, b *bundle.Bundle, id string) (sandbox, error)
	// DialPort connects to 127.0.0.1:port in the VM (the pod's port
	// forward, portforward.go).
	DialPort(ctx context.Context, port uint32) (guestPort, error)
}

// bootFunc boots a VM for bundle b (runtime.Boot in production); a pod
// sandbox's VM (pod set) can take members.
type bootFunc func(ctx context.Context, c runtime.Config, b *bundle.Bundle, id, stateDir string, pod bool) (sandbox, error)

func bootInstance(ctx context.Context, c runtime.Config, b *bundle.Bundle, id, stateDir string, pod bool) (sandbox, error) {
	boot := runtime.Boot
	if pod {
		boot = runtime.BootSandbox
	}
	inst, err := boot(ctx, c, b, id, stateDir)
	if err != nil {
		return nil, err
	}
	for _, w := range inst.Warnings {
		log.G(ctx).Warn(w)
	}
	logStart(ctx, "vm started", id, inst.Timings)
	logger := log.G(ctx).WithField("id", id)
	inst.FollowHostClock(logger.Warnf)
	return instance{inst}, nil
}

// logStart logs where a VM's start (or a pod member's setup) went, host
// side (containerd's log): the figures a slow RunPodSandbox or CreateTask
// is read from.
func logStart(ctx context.Context, msg, id string, t runtime.Timings) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	log.G(ctx).WithFields(log.Fields{
		"id": id, "restored": t.Restored, "templateBuilt": t.TemplateBuilt, "boots": t.Boots,
		"diskMs": ms(t.Disk), "initrdMs": ms(t.Initrd), "queuedMs": ms(t.Queued), "bootMs": ms(t.Boot), "networkMs": ms(t.Network), "setupMs": ms(t.Setup),
	}).Info(msg)
}

// AddMember adds a pod member to the sandbox's VM.
func (i instance) AddMember(ctx context.Context, c runtime.Config, b *bundle.Bundle, id string) (sandbox, error) {
	m, err := i.Instance.AddContainer(ctx, c, b, id)
	if err != nil {
		return nil, err
	}
	logStart(ctx, "pod member set up", id, m.Timings)
	return instance{m}, nil
}

// instance adapts runtime.Instance to sandbox.
type instance struct{ *runtime.Instance }

func (i instance) CreateProcess(ctx context.Context, id string, p *specs.Process) (guestProcess, error) {
	gp, err := i.Instance.CreateProcess(ctx, id, p)
	if err != nil {
		return nil, err
	}
	return process{gp}, nil
}

func (i instance) Disk() string { return i.Instance.Disk }

func (i instance) DialPort(ctx context.Context, port uint32) (guestPort, error) {
	pc, err := i.Instance.DialPort(ctx, port)
	if err != nil {
		return nil, err
	}
	return pc, nil
}

// process adapts runtime.Process to guestProcess.
type process struct{ *runtime.Process }

func (p process) Pid() uint32 { return p.Process.Pid }
