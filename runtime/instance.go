package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/network"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Timings are the phases of one container's life, for benchmarks and logs.
type Timings struct {
	Disk     time.Duration // rootfs → btrfs image, or its bind into the root share
	Initrd   time.Duration // kernel lookup + initrd (cached after the first)
	Queued   time.Duration // waiting for a boot slot (bootslots.go)
	Boot     time.Duration // VMM start → agent answers Ping
	Network  time.Duration // of Boot: a clone's network, configured after its restore
	Setup    time.Duration // mounts and device nodes in the guest
	Run      time.Duration // process start → exit status
	Teardown time.Duration // shutdown, VMM exit, cleanup
	Quiesce  time.Duration // of Teardown: the agent ending the processes, syncing and unmounting
	Boots    int           // VM boots it took: more than 1 after a stall (bootStalls)
	Guest    GuestBoot     // the guest's own account of Boot, by its clock
	// Restored: the VM started as a clone of a template (config
	// "templates"), which TemplateBuilt says this start booted and saved
	// first; Guest is then the template's boot.
	Restored, TemplateBuilt bool
}

// Instance is one booted VM with its agent connection.
type Instance struct {
	ID       string
	Bundle   *bundle.Bundle
	StateDir string
	Disk     string
	Driver   string
	Accel    vmm.Accel
	Agent    agentapi.AgentService
	Timings  Timings
	// Warnings are what went wrong without failing the start (a template
	// that could not be restored); the caller logs them.
	Warnings []string

	vm         VM
	client     *ttrpc.Client
	consoleLog string

	// share is the VM's shared directory of host bind mounts (nil: none).
	share *share
	// unholdKernel lets the kernel store remove the VM's kernel again.
	unholdKernel func()
	// root is the VM's shared directory of container roots (nil: the
	// rootfs is a disk, config Rootfs "disk").
	root *rootShare
	// net is the VM's attachment to the engine's network namespace (nil:
	// no network but the guest's loopback).
	net *network.Attachment
	// bridge is the VM's address and tap on the seed's bridge (nil: none).
	bridge *bridgeLease
	// late is the VM's NIC in the monitor's own network namespace, linked
	// to the engine's interface at start (nil: none; see lateNetwork).
	late *lateNetwork

	// keepDisk leaves the disk image to delete (the monitor's containers
	// keep their disk across their life; run's are removed at once).
	keepDisk bool

	// switchRoot: the container's process is PID 1 of the VM
	// (switchroot.go).
	switchRoot bool

	// containerID is the agent's name of this container: "" for the VM's
	// default container, the member's id in a pod.
	containerID string
	// pod is the sandbox whose VM a pod member shares (nil: this instance
	// owns its VM); serial is the member's attached disk, rootName its
	// entry in the sandbox's root share.
	pod      *Instance
	serial   string
	rootName string
	// memberShare is a member's part of the pod's shared directory.
	memberShare string
	// remote links a member to the VM of another monitor's container
	// (member.go; nil: none).
	remote *remoteSandbox
	// oom weighs the VM's host processes for the host's OOM killer (nil:
	// a pod member, whose VM is its sandbox's).
	oom *hostOOM

	exited  chan struct{} // closed once the VMM process has exited
	waitErr error         // VMM exit error, valid after exited is closed
	once    sync.Once
	// paused: Pause stopped the whole VM (its agent answers nothing
	// until Resume).
	paused atomic.Bool
	// clock reports the host's clock steps from the boot on (nil: not
	// watched); FollowHostClock acts on it.
	clock *clockWatch
}

// bootDeps are the side effects of Boot, injectable for tests.
type bootDeps struct {
	newVM       newVMFunc
	detectAccel func() vmm.Accel
	buildDisk   func(ctx context.Context, rootfs, image string, opts bundle.DiskOptions) (*bundle.DiskInfo, error)
	// assets holds the kernel of release ("" the default) for the VM and
	// returns its vmlinux, the initrd and its modules directory; unhold
	// lets it go.
	assets func(c Config, release string) (bootAssets, func(), error)
	// lateNetwork makes the tap of the late network mode; nil unless the
	// VMM runs in a network namespace of its own (the monitor's).
	lateNetwork func() (*lateNetwork, error)
	// hugeRAM readies a directory for guest RAM on huge pages and
	// returns their size (hugeRAMHost.hugeRAMDir); nil: none.
	hugeRAM func(dir string) (align int64, err error)
	// clockSteps reports the host's clock steps (hostClockSteps); nil:
	// the guest's clock does not follow them.
	clockSteps clockStepsFunc
}

func defaultBootDeps() bootDeps {
	return bootDeps{
		newVM:       newVM,
		detectAccel: vmm.DetectAccel,
		buildDisk:   bundle.BuildDisk,
		assets:      holdAssets,
		hugeRAM:     realHugeRAM().hugeRAMDir,
		clockSteps:  hostClockSteps,
	}
}

// Boot builds the disk, starts the VM for bundle b and waits for its agent;
// the container's mounts and devices are set up, no process is created yet.
// On error everything it made is removed again.
func Boot(ctx context.Context, c Config, b *bundle.Bundle, id, stateDir string) (*Instance, error) {
	return boot(ctx, c, b, id, stateDir, false, defaultBootDeps())
}

// BootSandbox is Boot for a pod's sandbox: the VM also gets a shared
// directory for the members that AddContainer adds later (and, with disk
// roots, PodSlots empty disk slots for their disks).
func BootSandbox(ctx context.Context, c Config, b *bundle.Bundle, id, stateDir string) (*Instance, error) {
	return boot(ctx, c, b, id, stateDir, true, defaultBootDeps())
}

func boot(ctx context.Context, c Config, b *bundle.Bundle, id, stateDir string, pod bool, d bootDeps) (_ *Instance, retErr error) {
	// Compiled first: a profile the guest cannot run fails before a VM.
	seccompProg, seccompFlags, err := guestSeccomp(b.Spec)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	if err := checkBlockIO(b.Spec); err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	handoff, err := switchRoot(b.Spec, pod)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	memMiB, cpus := vmSize(c, b.Spec)
	accel := d.detectAccel()
	driver, err := chooseDriver(c, accel)
	if err != nil {
		return nil, err
	}
	inst := &Instance{ID: id, Bundle: b, StateDir: stateDir, Driver: driver, Accel: accel, exited: make(chan struct{}),
		consoleLog: filepath.Join(stateDir, consoleLogFile), switchRoot: handoff, oom: newHostOOM(b.Spec.Process.OOMScoreAdj)}
	defer func() {
		if retErr != nil {
			inst.destroy()
		}
	}()
	// From before the VMM's start: a step of the host's clock while the
	// guest boots (its clock read from the RTC at the start) is followed
	// too. The host's clock is often stepped early in its own boot, as
	// its containers start.
	inst.watchClock(d.clockSteps)

	mounts, sh, err := guestMounts(b.Spec, stateDir, pod)
	if err != nil {
		return nil, err
	}
	inst.share = sh
	if sh != nil {
		if sh.fs, err = shareFS(c, driver); err != nil {
			return nil, err
		}
	}

	t0 := time.Now()
	var info *bundle.DiskInfo
	var disks []vmm.Disk
	if c.Rootfs == RootfsDisk {
		if err := os.MkdirAll(c.disksDir(), 0o700); err != nil {
			return nil, fmt.Errorf("creating disks dir: %w", err)
		}
		inst.Disk = filepath.Join(c.disksDir(), id+"-"+randomSuffix()+".img")
		if info, _, err = c.diskCache().Build(ctx, d.buildDisk, b.Rootfs, inst.Disk, cacheKey(b), bundle.DiskOptions{FreeSpace: c.FreeSpace}); err != nil {
			return nil, fmt.Errorf("building disk for container %q: %w", id, err)
		}
		// By its serial a clone's agent finds the disk once it has a size
		// (its template's was an empty placeholder).
		disks = append(disks, vmm.Disk{Path: inst.Disk, Serial: rootDiskSerial})
		for i := 1; pod && i <= c.PodSlots; i++ {
			slot := filepath.Join(stateDir, fmt.Sprintf("slot%d.img", i))
			if err := os.WriteFile(slot, nil, 0o600); err != nil {
				return nil, fmt.Errorf("creating disk slot %q: %w", slot, err)
			}
			disks = append(disks, vmm.Disk{Path: slot, Serial: fmt.Sprintf("initos-s%d", i), Slot: true})
		}
	} else {
		fs, err := shareFS(c, driver)
		if err != nil {
			return nil, fmt.Errorf("sharing the rootfs of container %q: %w", id, err)
		}
		if inst.root, err = newRootShare(stateDir, fs); err != nil {
			return nil, err
		}
		if err := inst.root.bind(b.Rootfs, rootEntry, nil); err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
	}
	inst.Timings.Disk = time.Since(t0)

	t0 = time.Now()
	att, err := attachNetwork(b.Spec)
	if err != nil {
		return nil, fmt.Errorf("connecting container %q to its network: %w", id, err)
	}
	inst.net = att
	if p, ok := NetnsPath(b.Spec); ok && p == "" && bridgeExists(c.Bridge) {
		// A new network namespace on a host with the seed's bridge.
		if inst.bridge, err = attachBridge(c, id); err != nil {
			return nil, fmt.Errorf("connecting container %q to bridge %s: %w", id, c.Bridge, err)
		}
	} else if ok && p == "" && d.lateNetwork != nil {
		// A new network namespace that is the monitor's own: the engine
		// may configure it before start.
		if inst.late, err = d.lateNetwork(); err != nil {
			return nil, fmt.Errorf("container %q: %w", id, err)
		}
	}

	var shares []vmm.Share
	if inst.root != nil {
		shares = append(shares, inst.root.vmmShare())
	}
	if sh != nil {
		shares = append(shares, sh.vmmShare())
	}
	vcfg := vmm.Config{
		ID:         id,
		Disks:      disks,
		MemoryMiB:  memMiB,
		CPUs:       cpus,
		StateDir:   stateDir,
		ConsoleLog: inst.consoleLog,
		Shares:     shares,
	}
	if att != nil {
		vcfg.Netns = att.NetnsPath
		vcfg.NICs = []vmm.NIC{{Tap: att.Tap, MAC: att.MAC.String()}}
	}
	if inst.bridge != nil {
		vcfg.NICs = []vmm.NIC{inst.bridge.nic()}
	}
	clone := c.Templates && cloneable(driver) == nil
	bootGroups := moduleGroups(driver, vcfg)
	cloneGroups := bootGroups
	if clone {
		// A clone's modules are its template's, loaded at its boot: the
		// groups of a VM restored with vcfg's devices (a virtiofs share
		// hot-added after the restore needs PCI).
		shape := vcfg
		shape.RestoreFrom = &vmm.Snapshot{}
		cloneGroups = moduleGroups(driver, shape)
	}
	if inst.late != nil {
		// After groups: the guest loads the NIC's driver only when
		// ConfigureNetwork gives it a network.
		vcfg.NICs = []vmm.NIC{inst.late.nic()}
	}
	ba, unhold, err := d.assets(c, b.Spec.Annotations[KernelAnnotation])
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	inst.unholdKernel = unhold
	vcfg.Kernel, vcfg.Initrd, vcfg.Modules = ba.vmlinux, ba.initrd, ba.modules
	// vcfg's command line is its template's; a boot's names only its own
	// module groups, and a booted guest configures its NIC from it. A
	// clone's NIC in the engine mode is configured after the restore
	// (ConfigureNetwork), as the late mode's is.
	// initos.template=1: the template's agent starts a spare process helper
	// before it says it is ready, and each clone's first process starts
	// through it (guestagent/spare_linux.go).
	vcfg.Cmdline = guestCmdline(cloneGroups, c.Debug, len(disks) > 0, handoff) + " initos.template=1"
	boot := vcfg
	boot.Cmdline = guestCmdline(bootGroups, c.Debug, len(disks) > 0, handoff)
	// The container's VM, not its template, which serves every container.
	boot.OOMScoreAdj = b.Spec.Process.OOMScoreAdj
	if att != nil {
		boot.Cmdline += " " + att.KernelArg()
	}
	if inst.bridge != nil {
		boot.Cmdline += " " + inst.bridge.kernelArg()
	}
	inst.Timings.Initrd = time.Since(t0)

	t0 = time.Now()
	release, err := acquireBootSlot(ctx, c.bootSlotsDir(), bootSlots(c, accel))
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, err)
	}
	// Held through the boot and the setup: the start's CPU work.
	defer release()
	inst.Timings.Queued = time.Since(t0)

	t0 = time.Now()
	if clone {
		var err error
		if inst.Timings.TemplateBuilt, err = inst.startClone(ctx, d.newVM, driver, accel, vcfg, c); err != nil {
			// The container still starts: a failed restore costs a boot.
			inst.Warnings = append(inst.Warnings, fmt.Sprintf("container %q: starting from a template: %v; booting instead", id, err))
		} else {
			inst.Timings.Restored = true
		}
	}
	if !inst.Timings.Restored {
		boot = withHugeRAM(boot, c, driver, d.hugeRAM)
		if err := inst.startVM(ctx, d.newVM, driver, boot, c); err != nil {
			return nil, err
		}
	}
	inst.Timings.Boot = time.Since(t0)

	t0 = time.Now()
	setup := setupRequest(b, info, mounts, sh, false)
	setup.Seccomp, setup.SeccompFlags = seccompProg, seccompFlags
	switch {
	case inst.root != nil:
		setup.RootShare, setup.RootPath = inst.root.agentShare(), rootEntry
	case inst.Timings.Restored:
		// The template's disk was empty: the agent waits for this one's
		// size, finding it by its serial.
		setup.RootSerial = rootDiskSerial
	default:
		setup.RootDevice = "/dev/vda"
	}
	if inst.Timings.Restored {
		// Within the Setup call's own bound, so that a share that never
		// appears is named.
		waitHotAdded(setup, min(time.Duration(c.BootTimeout), callTimeout/2))
	}
	if err := inst.setup(ctx, setup); err != nil {
		return nil, err
	}
	inst.Timings.Setup = time.Since(t0)
	return inst, nil
}

// setupRequest is the agent's Setup of bundle b, whose disk is described
// by info (nil: the root is shared, not a disk), with the guest's mounts
// and the VM's share; member says it joins a pod's VM (guestNamespaces).
func setupRequest(b *bundle.Bundle, info *bundle.DiskInfo, mounts []*agentapi.Mount, sh *share, member bool) *agentapi.SetupRequest {
	req := &agentapi.SetupRequest{
		RootReadonly: b.Spec.Root.Readonly,
		Hostname:     b.Spec.Hostname,
		Mounts:       mounts,
		Share:        sh.agentShare(),
		Limits:       cgroupLimits(b.Spec),
	}
	if info != nil {
		req.RootFstype = "btrfs"
		req.DeviceNodes = deviceNodes(info.Devices)
		req.RootAttrs = &agentapi.FileAttrs{Mode: info.RootMode, Uid: info.RootUID, Gid: info.RootGID}
	}
	req.OwnPidNamespace, req.NewNamespaces, req.JoinNamespaces = guestNamespaces(b.Spec, member)
	req.DeviceRules = deviceRules(b.Spec)
	req.DeviceNodes = append(req.DeviceNodes, specDevices(b.Spec)...)
	if b.Spec.Linux != nil {
		req.RootfsPropagation = b.Spec.Linux.RootfsPropagation
	}
	if l := b.Spec.Linux; l != nil {
		req.MaskedPaths, req.ReadonlyPaths = l.MaskedPaths, l.ReadonlyPaths
		// Validated by bundle.Load (runc's namespaced sysctls only).
		req.Sysctls = l.Sysctl
	}
	return req
}

// cgroupLimits are the spec's limits for the container's cgroup in the
// guest (nil: none). The VM is sized by them too; inside a pod's VM they
// are what bounds one container.
func cgroupLimits(s *specs.Spec) *agentapi.CgroupLimits {
	if s.Linux == nil {
		return nil
	}
	return resourceLimits(s.Linux.Resources)
}

// resourceLimits are the cgroup limits of r (nil: none): memory, pids,
// CPU quota and shares.
func resourceLimits(r *specs.LinuxResources) *agentapi.CgroupLimits {
	if r == nil {
		return nil
	}
	l := &agentapi.CgroupLimits{}
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		l.MemoryBytes = *r.Memory.Limit
	}
	if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit > 0 {
		l.Pids = *r.Pids.Limit
	}
	if r.CPU != nil {
		if r.CPU.Quota != nil && *r.CPU.Quota > 0 {
			l.CpuQuotaUs = *r.CPU.Quota
			if r.CPU.Period != nil {
				l.CpuPeriodUs = *r.CPU.Period
			}
		}
		l.CpuWeight = cpuWeight(r.CPU.Shares)
	}
	if l.MemoryBytes == 0 && l.Pids == 0 && l.CpuQuotaUs == 0 && l.CpuWeight == 0 {
		return nil
	}
	return l
}

// setup runs the agent's Setup of the container.
func (inst *Instance) setup(ctx context.Context, req *agentapi.SetupRequest) error {
	if err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := inst.Agent.Setup(ctx, req)
		return err
	}); err != nil {
		return fmt.Errorf("setting up container %q in the guest: %w", inst.ID, err)
	}
	return nil
}

// callTimeout bounds agent calls that do not wait for the container
// (a variable for tests of an agent that stops answering).
var callTimeout = 60 * time.Second

// maxBootAttempts bounds the boots of one VM whose guest stalls in a known,
// transient way (bootStalls).
const maxBootAttempts = 3

// consoleCapEvery is how often a running VM's console log is capped.
const consoleCapEvery = 2 * time.Second

// capConsole keeps the console log at path, which the guest fills at will,
// to its last vmm.ConsoleKeep bytes of space (vmm.CapLog) until exited is
// closed. A filesystem that cannot punch holes ends it: the log then grows
// as before.
func capConsole(path string, exited <-chan struct{}) {
	t := time.NewTicker(consoleCapEvery)
	defer t.Stop()
	var done int64
	for {
		select {
		case <-exited:
			return
		case <-t.C:
		}
		d, err := vmm.CapLog(path, vmm.ConsoleKeep, done)
		if err != nil {
			return
		}
		done = d
	}
}

// withHugeRAM gives a booted qemu VM whose RAM must be shared (virtiofsd
// maps it) a file on huge pages in c.RAMDir (hugeRAMHost). A host without
// them keeps the memfd, which costs only speed: `initos-runtime check`
// says why.
func withHugeRAM(vcfg vmm.Config, c Config, driver string, prepare func(string) (int64, error)) vmm.Config {
	if c.NoHugePages || prepare == nil || driver != "qemu" || !vcfg.HasShares(vmm.ShareVirtiofs) {
		return vcfg
	}
	align, err := prepare(c.RAMDir)
	if err != nil {
		return vcfg
	}
	vcfg.RAMDir, vcfg.RAMAlign = c.RAMDir, align
	return vcfg
}

// startVM starts the VM and waits for its agent. A guest whose console
// shows a known stall (bootStalls) is stopped and booted again, up to
// maxBootAttempts boots in all; each has the whole boot deadline.
func (inst *Instance) startVM(ctx context.Context, newVM newVMFunc, driver string, vcfg vmm.Config, c Config) error {
	for attempt := 1; ; attempt++ {
		if err := inst.launch(ctx, newVM, driver, vcfg, c, "starting"); err != nil {
			return err
		}
		inst.Timings.Boots = attempt
		err := inst.connect(ctx, time.Duration(c.BootTimeout))
		if err == nil || !errors.Is(err, ErrBootStalled) || attempt == maxBootAttempts {
			if err != nil && attempt > 1 {
				return fmt.Errorf("boot %d of %d: %w", attempt, maxBootAttempts, err)
			}
			return err
		}
		if err := inst.stopVM(); err != nil {
			return fmt.Errorf("%w; %w", ErrBootStalled, err)
		}
	}
}

// launch starts one VMM for the instance (verb says how: "starting",
// "restoring"), with a console log of its own (a stall or a tail is this
// VMM's), and watches it: its exit closes inst.exited, its console is
// capped.
func (inst *Instance) launch(ctx context.Context, newVM newVMFunc, driver string, vcfg vmm.Config, c Config, verb string) error {
	if err := os.Remove(inst.consoleLog); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the console log of container %q: %w", inst.ID, err)
	}
	vm, err := newVM(driver, vcfg, c)
	if err != nil {
		return fmt.Errorf("configuring %s for container %q: %w", driver, inst.ID, err)
	}
	if err := vm.Start(ctx); err != nil {
		return fmt.Errorf("%s %s for container %q: %w", verb, driver, inst.ID, err)
	}
	exited := make(chan struct{})
	inst.vm, inst.exited = vm, exited
	go func() {
		inst.waitErr = vm.Wait()
		close(exited)
	}()
	go capConsole(inst.consoleLog, exited)
	return nil
}

// startClone starts the VM as a clone of its shape's template (booting
// and saving the template first when there is none), then makes it a VM
// of its own (Restored: the clock, the random generator). On error no VM
// is left and the caller boots one instead.
func (inst *Instance) startClone(ctx context.Context, newVM newVMFunc, driver string, accel vmm.Accel, vcfg vmm.Config, c Config) (built bool, err error) {
	snap, built, err := templateSnapshot(ctx, c, newVM, driver, accel, vcfg)
	if err != nil {
		return built, err
	}
	vcfg.RestoreFrom = snap
	vcfg.OOMScoreAdj = inst.Bundle.Spec.Process.OOMScoreAdj
	// A template its clone cannot start from is rebuilt by the next start
	// (a running clone keeps its mapping of the removed file); a failure
	// of this container's own (its network) leaves the template be.
	templateFailed := true
	defer func() {
		if err != nil && templateFailed && !errors.Is(err, context.Canceled) {
			_ = os.RemoveAll(filepath.Dir(snap.RAM))
		}
	}()
	if err := inst.launch(ctx, newVM, driver, vcfg, c, "restoring"); err != nil {
		return built, err
	}
	inst.Timings.Boots = 1
	defer func() {
		if err != nil {
			if inst.client != nil {
				inst.client.Close()
			}
			inst.client, inst.Agent = nil, nil
			_ = inst.stopVM()
			inst.vm = nil
		}
	}()
	if err := inst.connect(ctx, time.Duration(c.BootTimeout)); err != nil {
		return built, err
	}
	if err := inst.resync(ctx); err != nil {
		return built, fmt.Errorf("making the clone a vm of its own: %w", err)
	}
	templateFailed = false
	// What a booted VM's xip= says: the engine's or the bridge's network
	// (the late mode's comes from the engine, later).
	var req *agentapi.NetworkRequest
	var where string
	switch {
	case inst.net != nil:
		req, where = networkRequest(inst.net), inst.net.Iface
	case inst.bridge != nil:
		req, where = inst.bridge.networkRequest(), c.Bridge
	}
	if req != nil {
		t0 := time.Now()
		err = inst.call(ctx, callTimeout, func(ctx context.Context) error {
			_, err := inst.Agent.ConfigureNetwork(ctx, req)
			return err
		})
		inst.Timings.Network = time.Since(t0)
		if err != nil {
			return built, fmt.Errorf("configuring the clone's network (%s on %s): %w", req.Address, where, err)
		}
	}
	return built, nil
}

// stopVM stops the VMM of a boot that failed and waits for its exit.
func (inst *Instance) stopVM() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := inst.vm.Stop(ctx)
	select {
	case <-inst.exited:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("vm of container %q (pid %d) did not exit after stop (%v)", inst.ID, inst.vm.Pid(), err)
	}
}

// connect dials the agent and waits for Ping, failing early when the VMM
// exits or the console shows a stall (bootStalls), and with the console's
// last lines when the deadline passes.
func (inst *Instance) connect(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := inst.exited // this boot's VMM
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	var stall atomic.Value // the bootStalls line the console showed
	go func() {
		if line, ok := watchConsole(ctx, inst.consoleLog, consolePoll); ok {
			stall.Store(line)
			cancel()
		}
	}()
	conn, err := inst.vm.DialAgent(ctx)
	if err == nil {
		inst.client = newAgentClient(conn)
		inst.Agent = agentapi.NewAgentClient(inst.client)
		var pong *agentapi.PingResponse
		pong, err = inst.Agent.Ping(ctx, &agentapi.PingRequest{})
		inst.Timings.Guest = guestBoot(pong)
	}
	if err == nil {
		// From here on the connection is the agent's lifeline: when the
		// VMM exits, closing it fails every pending call at once.
		client := inst.client // this boot's: a later boot has its own
		go func() {
			<-exited
			client.Close()
		}()
		return nil
	}
	if line, ok := stall.Load().(string); ok {
		return fmt.Errorf("%w: container %q: the guest printed %q and would never reach its agent; last console output:\n%s",
			ErrBootStalled, inst.ID, line, vmm.ConsoleTail(inst.consoleLog, 20))
	}
	if inst.vmGone(err) {
		return fmt.Errorf("%w before its agent answered (container %q, %v); last console output:\n%s",
			ErrVMExited, inst.ID, inst.waitErr, vmm.ConsoleTail(inst.consoleLog, 20))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: container %q after %s (%s, accel %s); last console output:\n%s",
			ErrBootTimeout, inst.ID, timeout, inst.Driver, inst.Accel.Name, vmm.ConsoleTail(inst.consoleLog, 20))
	}
	return fmt.Errorf("connecting to the agent of container %q: %w", inst.ID, err)
}

// call runs f with a deadline; a VMM exit turns into ErrVMExited.
func (inst *Instance) call(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	callCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err := f(callCtx)
	if err != nil && inst.vmGone(err) {
		return fmt.Errorf("%w (%v): %w", ErrVMExited, inst.waitErr, err)
	}
	if err != nil && timeout > 0 && ctx.Err() == nil && errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		// Our deadline, not the caller's: the agent did not answer in
		// time; what the guest printed last may say why.
		return fmt.Errorf("%w (the agent did not answer within %s; last console output:\n%s)", agentError(err), timeout, inst.ConsoleTail(10))
	}
	return agentError(err)
}

// AgentError is an error the guest agent (or a monitor) returned: its
// message as the agent wrote it, and the ttrpc status code, which the
// shim maps at its edge.
type AgentError struct {
	Code codes.Code
	Msg  string
}

func (e *AgentError) Error() string { return e.Msg }

// agentError unwraps a ttrpc status into an AgentError, so that messages
// read as the agent wrote them ("exec: \"x\": executable file not found
// in $PATH", which engines match on) rather than as "rpc error: ...".
func agentError(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK {
		return &AgentError{Code: st.Code(), Msg: guestText(st.Message(), maxAgentErrorBytes)}
	}
	return err
}

// maxAgentErrorBytes bounds an agent's error message as the host keeps it:
// it ends in errors, logs and replies to the engines.
const maxAgentErrorBytes = 4 << 10

// guestText makes text from the guest, which the host does not trust, safe
// to print: one line (newlines and tabs become spaces), no other control
// characters or invalid UTF-8 (terminal escapes cannot reach a terminal or
// forge log lines), and at most max bytes, cut on a character boundary and
// marked with "...".
func guestText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			r = ' '
		case r == utf8.RuneError, unicode.IsControl(r):
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// exitSettle bounds how long a broken agent connection waits for the VMM's
// exit to be seen: a dying VMM's sockets close a moment before its Wait
// returns.
const exitSettle = 2 * time.Second

// vmGone reports whether the VMM has exited. When err says the connection
// broke or the VMM is gone, it first waits up to exitSettle for the exit.
func (inst *Instance) vmGone(err error) bool {
	if errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, vmm.ErrVMExited) {
		select {
		case <-inst.exited:
			return true
		case <-time.After(exitSettle):
			return false
		}
	}
	select {
	case <-inst.exited:
		return true
	default:
		return false
	}
}

// LostStatus is the exit status of a process whose wait failed with err:
// when the VM has ended under it (its VMM killed or crashed, the
// connection gone), the process was killed with its VM, which is what a
// SIGKILL of a container's processes reports (128+9); ok is false for any
// other error.
func LostStatus(err error) (status int, ok bool) {
	if !errors.Is(err, ErrVMExited) {
		return 0, false
	}
	return 128 + int(syscall.SIGKILL), true
}

// vmExit says how the VMM ended, in a few words ("the VMM (qemu) ended:
// signal: killed").
func (inst *Instance) vmExit() string {
	select {
	case <-inst.exited:
	default:
		return "the VM ended"
	}
	if inst.waitErr == nil {
		return fmt.Sprintf("the VMM (%s) exited", inst.Driver)
	}
	// The drivers' exit errors (vmm.Supervisor.ExitedError) end with the
	// console's or log's last lines: keep the words before them.
	first, _, _ := strings.Cut(inst.waitErr.Error(), "\n")
	first, _, _ = strings.Cut(first, "; last ")
	return fmt.Sprintf("the VMM (%s) ended: %s", inst.Driver, first)
}

// Exited is closed once the VMM has exited.
func (inst *Instance) Exited() <-chan struct{} { return inst.exited }

// ConsoleTail returns the last n lines the guest wrote to its console.
func (inst *Instance) ConsoleTail(n int) string { return vmm.ConsoleTail(inst.consoleLog, n) }

// Shutdown asks the agent to power the VM off, waits for the VMM to exit
// within timeout, then stops it by force and removes the disk image.
func (inst *Instance) Shutdown(ctx context.Context, timeout time.Duration) error {
	if inst.pod != nil {
		return inst.memberShutdown(ctx)
	}
	if inst.remote != nil {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err := inst.remote.remove(ctx, inst.exited)
		return errors.Join(err, inst.destroy())
	}
	t0 := time.Now()
	defer func() { inst.Timings.Teardown = time.Since(t0) }()
	quiesced := false
	if inst.Agent != nil {
		select {
		case <-inst.exited:
		default:
			// The agent replies once every process is gone and every
			// filesystem synced and unmounted, then powers off; a lost
			// reply is fine because the VMM's exit below is what counts.
			quiesced = inst.call(ctx, min(10*time.Second, timeout), func(ctx context.Context) error {
				_, err := inst.Agent.Shutdown(ctx, &agentapi.Empty{})
				return err
			}) == nil
			inst.Timings.Quiesce = time.Since(t0)
		}
	}
	// A guest that said it is quiesced has nothing left to lose: the VMM
	// is stopped at once rather than after the guest kernel's own power
	// off (the agent's reply delay and the kernel's shutdown, about 200 ms
	// under TCG), and killed rather than asked to quit (its orderly exit
	// cost 15-20 ms more under TCG).
	if inst.vm != nil && !quiesced {
		select {
		case <-inst.exited:
		case <-time.After(timeout):
		}
	}
	if k, ok := inst.vm.(killer); ok && quiesced {
		if err := k.Kill(); err != nil {
			return errors.Join(err, inst.destroy())
		}
	}
	return inst.destroy()
}

// killer is a VM whose VMM can be ended at once (both drivers).
type killer interface {
	Kill() error
}

// destroy stops the VMM and removes the disk image; safe to call twice.
func (inst *Instance) destroy() error {
	var errs []error
	inst.once.Do(func() {
		inst.clock.close()
		if inst.client != nil {
			inst.client.Close()
		}
		if inst.remote != nil {
			inst.remote.close() // its sandbox removes it
		}
		if inst.vm != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := inst.vm.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stopping vm of container %q: %w", inst.ID, err))
			}
			cancel()
			select {
			case <-inst.exited:
			case <-time.After(15 * time.Second):
				errs = append(errs, fmt.Errorf("vm of container %q (pid %d) did not exit after stop", inst.ID, inst.vm.Pid()))
			}
		}
		if inst.bridge != nil {
			if err := inst.bridge.release(); err != nil {
				errs = append(errs, fmt.Errorf("releasing the bridge address of container %q: %w", inst.ID, err))
			}
		}
		if inst.net != nil {
			if err := inst.net.Detach(); err != nil {
				errs = append(errs, fmt.Errorf("detaching container %q from its network: %w", inst.ID, err))
			}
		}
		if inst.late != nil {
			if err := inst.late.remove(); err != nil {
				errs = append(errs, fmt.Errorf("removing the tap of container %q: %w", inst.ID, err))
			}
		}
		if err := inst.share.remove(); err != nil {
			errs = append(errs, err)
		}
		if err := inst.root.remove(); err != nil {
			errs = append(errs, err)
		}
		if inst.Disk != "" && !inst.keepDisk {
			if err := os.Remove(inst.Disk); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing disk %q: %w", inst.Disk, err))
			}
		}
		if inst.unholdKernel != nil {
			inst.unholdKernel() // the VM is gone
		}
	})
	return errors.Join(errs...)
}

// guestCmdline is the runtime's part of the kernel command line
// (docs/contracts.md); the driver adds console and timing arguments.
func guestCmdline(groups []string, debug, disk, handoff bool) string {
	args := []string{"initos.load=" + strings.Join(groups, ",")}
	if disk {
		args = append(args, "initos.root=/dev/vda", "initos.rootfstype=btrfs")
	}
	if handoff {
		// Only such VMs: PID 1 then starts the agent as a child.
		args = append(args, "initos.pid1=handoff")
	}
	if debug {
		// earlyprintk: the kernel's messages from before its console
		// is up (the legacy serial port both VMMs have).
		args = append(args, "initos.debug=1", "earlyprintk=ttyS0")
	}
	return strings.Join(args, " ")
}

// vmSize sizes the VM from the spec's resources, else from the config.
func vmSize(c Config, s *specs.Spec) (memMiB, cpus int) {
	memMiB, cpus = c.MemoryMiB, c.CPUs
	if m, n, ok := podSize(c, s.Annotations); ok {
		return m, n
	}
	if s.Linux == nil || s.Linux.Resources == nil {
		return memMiB, cpus
	}
	r := s.Linux.Resources
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		memMiB = int(*r.Memory.Limit >> 20)
		if memMiB < MinMemoryMiB {
			memMiB = MinMemoryMiB
		}
	}
	if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 && r.CPU.Period != nil && *r.CPU.Period > 0 {
		q, p := *r.CPU.Quota, int64(*r.CPU.Period)
		cpus = int((q + p - 1) / p)
	} else if r.CPU != nil && r.CPU.Cpus != "" {
		// A cpuset ("0-1,4") sizes the VM by its CPU count.
		if n := cpusetCount(r.CPU.Cpus); n > 0 {
			cpus = n
		}
	}
	if cpus < 1 {
		cpus = 1
	}
	return memMiB, cpus
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func deviceNodes(devs []bundle.DeviceNode) []*agentapi.DeviceNode {
	out := make([]*agentapi.DeviceNode, 0, len(devs))
	for _, d := range devs {
		out = append(out, &agentapi.DeviceNode{Path: d.Path, Type: d.Type, Major: d.Major, Minor: d.Minor, Mode: d.Mode, Uid: d.UID, Gid: d.GID})
	}
	return out
}

// processJSON is the spec's process as the agent takes it.
func processJSON(p *specs.Process) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding process: %w", err)
	}
	return b, nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// cpusetCount counts the CPUs of a cpuset list such as "0-3,6"; 0 when it
// does not parse.
func cpusetCount(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		n += b - a + 1
	}
	return n
}

// The CRI's totals of a pod's containers, on its sandbox's spec (kubelet
// ≥ 1.23 passes them in the PodSandboxConfig's resources).
const (
	annotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
	annotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
)

// podSize sizes a pod's VM from its sandbox's annotations: the configured
// memory for the guest itself plus the containers' total, and the CPUs
// their total quota needs (at least the configured count). ok is false
// without those annotations.
func podSize(c Config, ann map[string]string) (memMiB, cpus int, ok bool) {
	mem, _ := strconv.ParseInt(ann[annotationSandboxMemory], 10, 64)
	quota, _ := strconv.ParseInt(ann[annotationSandboxCPUQuota], 10, 64)
	period, _ := strconv.ParseInt(ann[annotationSandboxCPUPeriod], 10, 64)
	if mem <= 0 && (quota <= 0 || period <= 0) {
		return 0, 0, false
	}
	memMiB, cpus = c.MemoryMiB, c.CPUs
	if mem > 0 {
		memMiB += int(mem >> 20)
	}
	if quota > 0 && period > 0 {
		cpus = max(cpus, int((quota+period-1)/period))
	}
	return memMiB, cpus, true
}

// VMSize is the memory (MiB) and CPU count a VM for spec s gets under c.
func VMSize(c Config, s *specs.Spec) (memMiB, cpus int) { return vmSize(c, s) }

// VMPid is the VMM's process id (0 before it started).
func (inst *Instance) VMPid() int {
	if inst.vm == nil {
		return 0
	}
	return inst.vm.Pid()
}

// Pause freezes the whole VM; Resume lets it run again.
func (inst *Instance) Pause(ctx context.Context) error { return inst.freeze(ctx, true) }

// Resume undoes Pause.
func (inst *Instance) Resume(ctx context.Context) error { return inst.freeze(ctx, false) }

func (inst *Instance) freeze(ctx context.Context, pause bool) error {
	if inst.pod != nil || inst.remote != nil {
		// One container of a VM others share: its processes, not the VM.
		return inst.FreezeContainer(ctx, pause)
	}
	p, ok := inst.vm.(pauser)
	if !ok {
		return fmt.Errorf("container %q: %w: the %s driver cannot pause", inst.ID, ErrUnsupported, inst.Driver)
	}
	if pause {
		// Before the stop: a clock step meanwhile is not sent to a guest
		// that cannot answer.
		inst.paused.Store(true)
		if err := p.Pause(ctx); err != nil {
			inst.paused.Store(false)
			return err
		}
		return nil
	}
	if err := p.Resume(ctx); err != nil {
		return err
	}
	inst.paused.Store(false)
	// The guest's clock stood still with its CPUs: it is the host's again
	// before anything the container does reads it (runc's frozen cgroup
	// never stops the clock).
	if err := inst.resync(ctx); err != nil {
		return fmt.Errorf("container %q: setting the guest's clock after resuming: %w", inst.ID, err)
	}
	return nil
}

// FreezeContainer freezes (or thaws) only this container's processes in
// the guest, as runc freezes a container's cgroup: the pause of a
// container whose VM other containers share, which runs on for them (and
// whose clock therefore never stops).
func (inst *Instance) FreezeContainer(ctx context.Context, frozen bool) error {
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := inst.Agent.FreezeContainer(ctx, &agentapi.FreezeRequest{ContainerId: inst.containerID, Frozen: frozen})
		return err
	})
	if err != nil {
		return fmt.Errorf("container %q: %w", inst.ID, err)
	}
	return nil
}

// resync sets the guest's clock to the host's and mixes fresh host
// randomness into its generator (Restored): after a restore, and after a
// pause, the guest's own clock is behind.
func (inst *Instance) resync(ctx context.Context) error {
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("reading the host's randomness: %w", err)
	}
	return inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := inst.Agent.Restored(ctx, &agentapi.RestoredRequest{UnixNanos: time.Now().UnixNano(), Entropy: entropy})
		return err
	})
}

// Usage is the VMM process's CPU time and resident memory: what the VM
// costs the host.
func (inst *Instance) Usage() (cpuNanos, rssBytes uint64, err error) {
	cpu, rss, err := procUsage(inst.VMPid())
	if err != nil {
		return 0, 0, fmt.Errorf("reading the VMM's usage for container %q: %w", inst.ID, err)
	}
	return cpu, rss, nil
}

// Processes lists the guest's processes apart from the agent.
func (inst *Instance) Processes(ctx context.Context) ([]*agentapi.ProcessInfo, error) {
	var resp *agentapi.ListProcessesResponse
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		var err error
		resp, err = inst.Agent.ListProcesses(ctx, &agentapi.ListProcessesRequest{ContainerId: inst.containerID})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the processes of container %q: %w", inst.ID, err)
	}
	return guestProcesses(resp.Processes), nil
}

// ProcessDetail lists the container's processes with their /proc files
// (procview's source).
func (inst *Instance) ProcessDetail(ctx context.Context) (*agentapi.ListProcessesResponse, error) {
	var resp *agentapi.ListProcessesResponse
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		var err error
		resp, err = inst.Agent.ListProcesses(ctx, &agentapi.ListProcessesRequest{ContainerId: inst.containerID, Detail: true})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the processes of container %q: %w", inst.ID, err)
	}
	return resp, nil
}

// GuestStats reads the container's cgroup in the guest.
func (inst *Instance) GuestStats(ctx context.Context) (*agentapi.StatsResponse, error) {
	var resp *agentapi.StatsResponse
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		var err error
		resp, err = inst.Agent.Stats(ctx, &agentapi.ContainerRequest{ContainerId: inst.containerID})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the stats of container %q: %w", inst.ID, err)
	}
	return resp, nil
}

// UpdateLimits writes new limits to the container's cgroup in the guest.
func (inst *Instance) UpdateLimits(ctx context.Context, l *agentapi.CgroupLimits) error {
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := inst.Agent.UpdateLimits(ctx, &agentapi.UpdateLimitsRequest{ContainerId: inst.containerID, Limits: l})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating the limits of container %q: %w", inst.ID, err)
	}
	return nil
}
