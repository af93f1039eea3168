package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeHost provides bootDeps that need no root, qemu or kernel: a disk
// "image" is a small file, the assets are plain files, the accelerator is
// TCG and every VM is a fakeVM serving agent.
type fakeHost struct {
	t        *testing.T
	agent    *fakeAgent
	vmScript fakeVMScript
	// firstScripts script the first VMs made, vmScript the ones after.
	firstScripts []fakeVMScript
	// buildErr makes buildDisk fail after writing a partial image.
	buildErr error
	// devices are the device nodes buildDisk reports.
	devices []bundle.DeviceNode

	mu      sync.Mutex
	vms     []*fakeVM
	vmCfgs  []vmm.Config
	images  []string
	kernel  string
	initrd  string
	modules string
	drivers []string
	// kernelHolds are the releases boots held, kernelUnholds how many
	// holds were let go.
	kernelHolds   []string
	kernelUnholds int
}

func newFakeHost(t *testing.T) *fakeHost {
	dir := t.TempDir()
	h := &fakeHost{t: t, agent: newFakeAgent(), kernel: filepath.Join(dir, "vmlinux"), initrd: filepath.Join(dir, "initrd.img"),
		modules: filepath.Join(dir, "lib", "modules", "6.1.0-99-amd64")}
	if err := os.MkdirAll(h.modules, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{h.kernel, h.initrd} {
		if err := os.WriteFile(p, []byte("not really "+filepath.Base(p)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *fakeHost) deps() bootDeps {
	return bootDeps{
		newVM: func(driver string, cfg vmm.Config, c Config) (VM, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			script := h.vmScript
			if n := len(h.vms); n < len(h.firstScripts) {
				script = h.firstScripts[n]
			}
			v := newFakeVM(cfg, h.agent, script)
			h.vms = append(h.vms, v)
			h.vmCfgs = append(h.vmCfgs, cfg)
			h.drivers = append(h.drivers, driver)
			return v, nil
		},
		detectAccel: func() vmm.Accel {
			return vmm.Accel{Name: vmm.AccelTCG, Reason: "test host: /dev/kvm does not exist; using TCG"}
		},
		buildDisk: func(ctx context.Context, rootfs, image string, opts bundle.DiskOptions) (*bundle.DiskInfo, error) {
			h.mu.Lock()
			h.images = append(h.images, image)
			h.mu.Unlock()
			data := []byte("btrfs image of " + rootfs)
			if err := os.WriteFile(image, data, 0o600); err != nil {
				return nil, err
			}
			if h.buildErr != nil {
				return nil, h.buildErr
			}
			return &bundle.DiskInfo{Path: image, Size: int64(len(data)), Files: 1, Devices: h.devices,
				RootMode: 0o711, RootUID: 42, RootGID: 43}, nil
		},
		assets: func(c Config, release string) (bootAssets, func(), error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.kernelHolds = append(h.kernelHolds, release)
			return bootAssets{vmlinux: h.kernel, initrd: h.initrd, modules: h.modules}, func() {
				h.mu.Lock()
				defer h.mu.Unlock()
				h.kernelUnholds++
			}, nil
		},
	}
}

// vm returns the only VM booted, failing the test unless there is one.
func (h *fakeHost) vm() *fakeVM {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.vms) != 1 {
		h.t.Fatalf("%d VMs were made, want 1", len(h.vms))
	}
	return h.vms[0]
}

func (h *fakeHost) vmCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.vms)
}

// assertNothingLeft fails when a disk image remains or a VM still runs.
func (h *fakeHost) assertNothingLeft(c Config) {
	h.t.Helper()
	h.mu.Lock()
	images, vms := append([]string(nil), h.images...), append([]*fakeVM(nil), h.vms...)
	h.mu.Unlock()
	for _, img := range images {
		if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
			h.t.Errorf("disk image %s left behind (stat: %v)", img, err)
		}
	}
	if ents, err := os.ReadDir(c.disksDir()); err == nil && len(ents) > 0 {
		h.t.Errorf("disks dir %s not empty: %d entries, first %s", c.disksDir(), len(ents), ents[0].Name())
	}
	for i, v := range vms {
		if v.started && !v.hasExited() {
			h.t.Errorf("vm %d still running", i)
		}
	}
}

// testConfig is a Config whose directories live under the test's temp dir,
// with disk roots (TestBootSharedRoot covers shared ones).
func testConfig(t *testing.T) Config {
	dir := t.TempDir()
	return Config{
		Root:        filepath.Join(dir, "state"),
		DataDir:     filepath.Join(dir, "data"),
		VMM:         "qemu",
		BootTimeout: Duration(10 * time.Second),
		Rootfs:      RootfsDisk,
	}.WithDefaults()
}

// writeBundle writes a bundle running args and returns its directory.
func writeBundle(t *testing.T, edit func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "box",
		Process:  &specs.Process{Args: []string{"/bin/cat"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		// A new network namespace: loopback only (no path, no attach).
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}},
	}
	if edit != nil {
		edit(s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadBundle(t *testing.T, edit func(*specs.Spec)) *bundle.Bundle {
	t.Helper()
	b, err := bundle.Load(writeBundle(t, edit))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mkStateDir(t *testing.T, c Config, id string) string {
	t.Helper()
	d := filepath.Join(c.Root, id)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBootFailuresLeaveNothing(t *testing.T) {
	const id = "c1"
	for _, tc := range []struct {
		name    string
		setup   func(h *fakeHost, c *Config)
		wantIs  error
		want    []string
		wantVM  bool // a VM was made and must have been stopped
		maxTime time.Duration
	}{
		{
			name: "vm exits before the agent answers",
			setup: func(h *fakeHost, c *Config) {
				h.agent.pingHangs = true
				h.vmScript = fakeVMScript{
					console:     []string{"Linux version 6.1.0-56-amd64", "Run /init as init process"},
					exitAfter:   50 * time.Millisecond,
					exitConsole: []string{"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"},
					exitErr:     errors.New("exit status 1"),
				}
			},
			wantIs: ErrVMExited,
			want:   []string{`container "c1"`, "exit status 1", "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"},
			wantVM: true,
		},
		{
			name: "agent never answers",
			setup: func(h *fakeHost, c *Config) {
				h.agent.pingHangs = true
				h.vmScript.console = []string{"Linux version 6.1.0-56-amd64", "initos: loading 4 module groups"}
				c.BootTimeout = Duration(200 * time.Millisecond)
			},
			wantIs:  ErrBootTimeout,
			want:    []string{`container "c1"`, "after 200ms", "qemu, accel tcg", "initos: loading 4 module groups"},
			wantVM:  true,
			maxTime: 200*time.Millisecond + 2*time.Second,
		},
		{
			name: "setup fails",
			setup: func(h *fakeHost, c *Config) {
				h.agent.setupErr = errors.New("mounting /dev/vda on /mnt/root: invalid argument")
			},
			want:   []string{`setting up container "c1" in the guest`, "mounting /dev/vda on /mnt/root: invalid argument"},
			wantVM: true,
		},
		{
			name: "vm start fails",
			setup: func(h *fakeHost, c *Config) {
				h.vmScript.startErr = errors.New("qemu-system-x86_64: -machine microvm: unsupported")
			},
			want: []string{`starting qemu for container "c1"`, "microvm: unsupported"},
		},
		{
			name: "disk build fails",
			setup: func(h *fakeHost, c *Config) {
				h.buildErr = errors.New("mkfs.btrfs: exit status 1")
			},
			want: []string{`building disk for container "c1"`, "mkfs.btrfs: exit status 1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			c := testConfig(t)
			tc.setup(h, &c)
			b := loadBundle(t, nil)
			t0 := time.Now()
			inst, err := boot(context.Background(), c, b, id, mkStateDir(t, c, id), false, h.deps())
			elapsed := time.Since(t0)
			if err == nil {
				inst.Shutdown(context.Background(), time.Second)
				t.Fatal("boot succeeded")
			}
			if inst != nil {
				t.Errorf("boot returned an instance with its error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error does not wrap %v: %v", tc.wantIs, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if tc.maxTime > 0 && elapsed > tc.maxTime {
				t.Errorf("boot failed after %s, want at most %s", elapsed, tc.maxTime)
			}
			if tc.wantIs == ErrBootTimeout && elapsed < time.Duration(c.BootTimeout) {
				t.Errorf("boot timed out after %s, before the configured %s", elapsed, time.Duration(c.BootTimeout))
			}
			if tc.wantVM {
				if n := h.vm().stops(); n < 1 {
					t.Errorf("Stop called %d times, want at least 1", n)
				}
				// Never quiesced: stopped, not killed at once.
				if n := h.vm().kills(); n != 0 {
					t.Errorf("Kill called %d times, want 0", n)
				}
			}
			h.assertNothingLeft(c)
		})
	}
}

// TestBootVMExitsDuringSetup: a VMM that dies while a call is in flight
// turns into ErrVMExited with the console's explanation, not into a bare
// "ttrpc: closed".
func TestBootVMExitsDuringSetup(t *testing.T) {
	for i := 0; i < 20; i++ {
		h := newFakeHost(t)
		c := testConfig(t)
		h.agent.setupHangs = true
		h.vmScript = fakeVMScript{exitAfter: 30 * time.Millisecond, exitErr: errors.New("exit status 137"),
			exitConsole: []string{"Out of memory: Killed process 1 (init)"}}
		_, err := boot(context.Background(), c, loadBundle(t, nil), "c1", mkStateDir(t, c, "c1"), false, h.deps())
		if !errors.Is(err, ErrVMExited) || !strings.Contains(err.Error(), `setting up container "c1"`) {
			t.Fatalf("run %d: error %v, want ErrVMExited while setting up container \"c1\"", i, err)
		}
		h.assertNothingLeft(c)
	}
}

// TestBootVMExitRace repeats the exit-before-ready case: the VMM's exit
// breaks the agent connection a moment before Wait returns, as a real
// process's death does; the error must still say the VM exited.
func TestBootVMExitRace(t *testing.T) {
	for i := 0; i < 20; i++ {
		h := newFakeHost(t)
		c := testConfig(t)
		h.agent.pingHangs = true
		h.vmScript = fakeVMScript{exitAfter: 5 * time.Millisecond, exitErr: errors.New("exit status 1"),
			exitConsole: []string{"initos: no /dev/vda"}}
		_, err := boot(context.Background(), c, loadBundle(t, nil), "c1", mkStateDir(t, c, "c1"), false, h.deps())
		if !errors.Is(err, ErrVMExited) || !strings.Contains(err.Error(), "initos: no /dev/vda") {
			t.Fatalf("run %d: error %v, want ErrVMExited with the console tail", i, err)
		}
		h.assertNothingLeft(c)
	}
}

func TestBootAndShutdown(t *testing.T) {
	h := newFakeHost(t)
	h.devices = []bundle.DeviceNode{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, Mode: 0o666}}
	c := testConfig(t)
	b := loadBundle(t, func(s *specs.Spec) {
		lim := int64(256 << 20)
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &lim}}
		s.Root.Readonly = true
	})
	sd := mkStateDir(t, c, "web")
	inst, err := boot(context.Background(), c, b, "web", sd, false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	v := h.vm()
	cfg := h.vmCfgs[0]
	if h.drivers[0] != "qemu" || inst.Driver != "qemu" || inst.Accel.Name != vmm.AccelTCG {
		t.Errorf("driver %q/%q accel %q", h.drivers[0], inst.Driver, inst.Accel.Name)
	}
	if len(cfg.Disks) != 1 || cfg.Disks[0].Path != inst.Disk || inst.Disk != h.images[0] || filepath.Dir(inst.Disk) != c.disksDir() {
		t.Errorf("vm disks %+v, instance disk %q, built %q", cfg.Disks, inst.Disk, h.images)
	}
	if _, err := os.Stat(inst.Disk); err != nil {
		t.Errorf("disk image missing while the VM runs: %v", err)
	}
	if cfg.Kernel != h.kernel || cfg.Initrd != h.initrd || cfg.Modules != h.modules || cfg.MemoryMiB != 256 || cfg.CPUs != 1 || cfg.StateDir != sd ||
		cfg.ConsoleLog != filepath.Join(sd, "console.log") {
		t.Errorf("vm config %+v", cfg)
	}
	if want := "initos.load=mmio,blk,btrfs,console initos.root=/dev/vda initos.rootfstype=btrfs"; cfg.Cmdline != want {
		t.Errorf("cmdline %q, want %q", cfg.Cmdline, want)
	}
	if len(h.agent.setups) != 1 {
		t.Fatalf("%d Setup calls", len(h.agent.setups))
	}
	s := h.agent.setups[0]
	if s.RootDevice != "/dev/vda" || s.RootFstype != "btrfs" || !s.RootReadonly || s.Hostname != "box" {
		t.Errorf("setup root %q %q ro=%v host %q", s.RootDevice, s.RootFstype, s.RootReadonly, s.Hostname)
	}
	if len(s.DeviceNodes) != 1 || s.DeviceNodes[0].Path != "/dev/null" || s.DeviceNodes[0].Major != 1 || s.DeviceNodes[0].Minor != 3 || s.DeviceNodes[0].Mode != 0o666 {
		t.Errorf("setup devices %v", s.DeviceNodes)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Destination != "/proc" || s.Mounts[0].Type != "proc" {
		t.Errorf("setup mounts %v", s.Mounts)
	}
	if s.RootAttrs == nil || s.RootAttrs.Mode != 0o711 || s.RootAttrs.Uid != 42 || s.RootAttrs.Gid != 43 {
		t.Errorf("setup root attrs %v", s.RootAttrs)
	}
	select {
	case <-inst.Exited():
		t.Fatal("Exited closed while the VM runs")
	default:
	}

	if err := inst.Shutdown(context.Background(), 5*time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if n := h.agent.shutdownCalls(); n != 1 {
		t.Errorf("agent Shutdown called %d times", n)
	}
	select {
	case <-inst.Exited():
	default:
		t.Error("Exited not closed after Shutdown")
	}
	if err := v.Wait(); err != nil {
		t.Errorf("vm exit %v, want a clean one", err)
	}
	// The agent said the guest is quiesced: the VMM is killed at once,
	// not asked to quit nor waited for after the guest's own power off
	// (destroy's Stop then finds it gone).
	if n := v.kills(); n != 1 {
		t.Errorf("vm killed %d times, want 1", n)
	}
	if n := v.stops(); n != 1 {
		t.Errorf("vm stopped %d times, want 1", n)
	}
	if got := inst.ConsoleTail(1); got == "reboot: Power down" {
		t.Errorf("teardown waited for the guest's power off")
	}
	h.assertNothingLeft(c)
	if err := inst.Shutdown(context.Background(), time.Second); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestCgroupLimits(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name string
		r    *specs.LinuxResources
		want *agentapi.CgroupLimits
	}{
		{"none", nil, nil},
		{"empty", &specs.LinuxResources{}, nil},
		{"memory and pids", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20)}, Pids: &specs.LinuxPids{Limit: i64(2048)}},
			&agentapi.CgroupLimits{MemoryBytes: 64 << 20, Pids: 2048}},
		{"cpu quota and shares", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000), Shares: u64(1024)}},
			&agentapi.CgroupLimits{CpuQuotaUs: 50000, CpuPeriodUs: 100000, CpuWeight: 39}},
		{"unlimited values are none", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}, Pids: &specs.LinuxPids{Limit: i64(0)}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := cgroupLimits(&specs.Spec{Linux: &specs.Linux{Resources: tc.r}})
			if !proto.Equal(got, tc.want) {
				t.Errorf("cgroupLimits = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestBootStallRetried: a guest whose console shows a known stall
// (bootStalls) is stopped and booted again; after maxBootAttempts stalls
// the boot fails naming the stall, and nothing is left.
func TestBootStallRetried(t *testing.T) {
	stall := fakeVMScript{stalled: true, console: []string{"[    3.2] APIC frequency too slow, disabling apic timer"}}
	t.Run("second boot comes up", func(t *testing.T) {
		h := newFakeHost(t)
		h.firstScripts = []fakeVMScript{stall}
		c := testConfig(t)
		inst, err := boot(context.Background(), c, loadBundle(t, nil), "c1", mkStateDir(t, c, "c1"), false, h.deps())
		if err != nil {
			t.Fatalf("boot: %v", err)
		}
		defer inst.destroy()
		h.mu.Lock()
		vms := append([]*fakeVM(nil), h.vms...)
		h.mu.Unlock()
		if len(vms) != 2 || !vms[0].hasExited() || vms[1].hasExited() {
			t.Fatalf("%d VMs; want the stalled one stopped and a second one running", len(vms))
		}
		if tail := inst.ConsoleTail(5); strings.Contains(tail, "APIC") {
			t.Errorf("the console still holds the stalled boot's lines: %q", tail)
		}
	})
	t.Run("every boot stalls", func(t *testing.T) {
		h := newFakeHost(t)
		h.vmScript = stall
		c := testConfig(t)
		t0 := time.Now()
		_, err := boot(context.Background(), c, loadBundle(t, nil), "c1", mkStateDir(t, c, "c1"), false, h.deps())
		if !errors.Is(err, ErrBootStalled) || !strings.Contains(err.Error(), "APIC frequency too slow") {
			t.Fatalf("boot: %v; want ErrBootStalled naming the console line", err)
		}
		if n := h.vmCount(); n != maxBootAttempts {
			t.Errorf("%d boots, want %d", n, maxBootAttempts)
		}
		if took := time.Since(t0); took > 5*time.Second {
			t.Errorf("the stalls took %s to see: the boot deadline, not the console, ended them", took)
		}
		h.assertNothingLeft(c)
	})
}

// TestVMExit: how a VMM's end is said in a line, without the console
// lines the drivers' exit errors carry.
func TestVMExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exited  bool
		waitErr error
		want    string
	}{
		{"still running", false, nil, "the VM ended"},
		{"exited", true, nil, "the VMM (qemu) exited"},
		{"killed", true, errors.New("vm \"c1\": vmm process exited: qemu (pid 17) exited: signal: killed; last console output:\n[ 1.0] x"),
			"the VMM (qemu) ended: vm \"c1\": vmm process exited: qemu (pid 17) exited: signal: killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := &Instance{ID: "c1", Driver: "qemu", exited: make(chan struct{}), waitErr: tc.waitErr}
			if tc.exited {
				close(inst.exited)
			}
			if got := inst.vmExit(); got != tc.want {
				t.Errorf("vmExit = %q, want %q", got, tc.want)
			}
		})
	}
}

// The spec's linux.sysctl reaches the agent's Setup as it is.
func TestSetupRequestSysctls(t *testing.T) {
	sysctls := map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "65536"}
	b := &bundle.Bundle{Spec: &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Linux: &specs.Linux{Sysctl: sysctls}}}
	req := setupRequest(b, &bundle.DiskInfo{}, nil, nil, false)
	if len(req.Sysctls) != 2 || req.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" || req.Sysctls["kernel.shmmax"] != "65536" {
		t.Errorf("Sysctls = %v, want %v", req.Sysctls, sysctls)
	}
	b.Spec.Linux = nil
	if req := setupRequest(b, &bundle.DiskInfo{}, nil, nil, false); req.Sysctls != nil {
		t.Errorf("Sysctls without linux = %v", req.Sysctls)
	}
}

func TestGuestText(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", `exec: "x": executable file not found in $PATH`, 100, `exec: "x": executable file not found in $PATH`},
		{"newlines", "line one\nfake log line\r\tend", 100, "line one fake log line  end"},
		{"escapes", "red \x1b[31mtext\x1b[0m bell\a", 100, "red [31mtext[0m bell"},
		{"invalid utf-8", "a\xffb", 100, "ab"},
		{"cut", "héllo wörld", 7, "héllo ..."},
		{"cut on a rune", "ééé", 5, "éé..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := guestText(tc.in, tc.max); got != tc.want {
				t.Errorf("guestText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}

func TestAgentErrorBounded(t *testing.T) {
	huge := strings.Repeat("x\n", 1<<20)
	err := agentError(status.Error(codes.NotFound, huge))
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Code != codes.NotFound {
		t.Fatalf("agentError = %v, want an AgentError with NotFound", err)
	}
	if len(ae.Msg) > maxAgentErrorBytes+3 || strings.Contains(ae.Msg, "\n") {
		t.Errorf("message of %d bytes (newline: %v), want at most %d and one line", len(ae.Msg), strings.Contains(ae.Msg, "\n"), maxAgentErrorBytes)
	}
}

func TestExitStatusFromGuest(t *testing.T) {
	for in, want := range map[int32]int{0: 0, 1: 1, 137: 137, 250: 250, 255: 255, 256: 255, -1: 255, 1 << 30: 255} {
		if got := exitStatus(in); got != want {
			t.Errorf("exitStatus(%d) = %d, want %d", in, got, want)
		}
	}
}

// TestAgentRepliesBounded: a reply over its method's bound is refused
// before it is decoded (a hostile guest's ListProcesses of empty entries
// would grow about 70 times in the host's memory), naming the method.
func TestAgentRepliesBounded(t *testing.T) {
	h := newFakeHost(t)
	c := testConfig(t)
	b := loadBundle(t, nil)
	inst, err := boot(context.Background(), c, b, "web", mkStateDir(t, c, "web"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Shutdown(context.Background(), time.Second)
	flood := func(n int) {
		h.agent.mu.Lock()
		h.agent.processFlood = n
		h.agent.mu.Unlock()
	}
	flood(1000) // 2 KB encoded: fine
	if procs, err := inst.Processes(context.Background()); err != nil || len(procs) != 1000 {
		t.Fatalf("Processes: %d entries, %v; want 1000", len(procs), err)
	}
	flood(maxAgentProcessesReply) // 2 bytes each: twice the bound
	_, err = inst.Processes(context.Background())
	if !errors.Is(err, ErrAgentReply) || !strings.Contains(err.Error(), "ListProcesses") {
		t.Errorf("Processes with a flood: %v, want ErrAgentReply naming ListProcesses", err)
	}
}

func TestAgentReplyLimit(t *testing.T) {
	for _, tc := range []struct {
		method string
		limit  int
		agent  bool
	}{
		{"/initos.agent.v1.Agent/Ping", maxAgentReply, true},
		{"/initos.agent.v1.Agent/ReadStdout", maxAgentReadReply, true},
		{"/initos.agent.v1.Agent/ReadStderr", maxAgentReadReply, true},
		{"/initos.agent.v1.Agent/ListProcesses", maxAgentProcessesReply, true},
		{"/initos.agent.v1.Agent/ReadPort", maxAgentPortReply, true},
		{"/initos.monitor.v1.Monitor/State", 0, false},
	} {
		limit, agent := agentReplyLimit(tc.method)
		if limit != tc.limit || agent != tc.agent {
			t.Errorf("agentReplyLimit(%q) = %d, %v; want %d, %v", tc.method, limit, agent, tc.limit, tc.agent)
		}
	}
}

func TestGuestProcesses(t *testing.T) {
	procs := guestProcesses([]*agentapi.ProcessInfo{
		{Pid: 1, Comm: "sh\x1b[2J", Args: []string{"sh", "-c", "echo\nforged"}},
		nil,
		{Pid: 2, Comm: strings.Repeat("x", 10<<10)},
	})
	if len(procs) != 2 {
		t.Fatalf("%d processes, want the nil entry dropped", len(procs))
	}
	if procs[0].Comm != "sh[2J" || procs[0].Args[2] != "echo forged" {
		t.Errorf("process 1: comm %q, args %q", procs[0].Comm, procs[0].Args)
	}
	if n := len(procs[1].Comm); n > maxGuestArgBytes+3 {
		t.Errorf("process 2: comm of %d bytes", n)
	}
}

// TestBootHoldsKernel: a VM holds the kernel its annotation names (the
// default without one) from its boot to its end, and a boot that fails
// lets it go.
func TestBootHoldsKernel(t *testing.T) {
	h := newFakeHost(t)
	c := testConfig(t)
	b := loadBundle(t, func(s *specs.Spec) { s.Annotations = map[string]string{KernelAnnotation: "6.1.0-56-amd64"} })
	inst, err := boot(context.Background(), c, b, "k1", mkStateDir(t, c, "k1"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	if len(h.kernelHolds) != 1 || h.kernelHolds[0] != "6.1.0-56-amd64" || h.kernelUnholds != 0 {
		t.Fatalf("holds %q, unholds %d while the VM runs", h.kernelHolds, h.kernelUnholds)
	}
	if err := inst.Shutdown(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if h.kernelUnholds != 1 {
		t.Errorf("%d unholds after the VM ended, want 1", h.kernelUnholds)
	}
	// The VMM fails to start: after the hold.
	h.vmScript = fakeVMScript{startErr: errors.New("qemu: cannot open /dev/kvm")}
	if _, err := boot(context.Background(), c, loadBundle(t, nil), "k2", mkStateDir(t, c, "k2"), false, h.deps()); err == nil {
		t.Fatal("boot succeeded")
	}
	if len(h.kernelHolds) != 2 || h.kernelHolds[1] != "" || h.kernelUnholds != 2 {
		t.Errorf("holds %q, unholds %d after a failed boot", h.kernelHolds, h.kernelUnholds)
	}
}

// TestResumeSetsClock: a resumed VM's guest clock is set to the host's
// (it stood still while paused), with fresh randomness.
func TestResumeSetsClock(t *testing.T) {
	h := newFakeHost(t)
	c := testConfig(t)
	inst, err := boot(context.Background(), c, loadBundle(t, nil), "p1", mkStateDir(t, c, "p1"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Shutdown(context.Background(), 5*time.Second) })
	if err := inst.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !h.vm().paused || len(h.agent.restored) != 0 {
		t.Fatalf("paused %v, Restored calls %d", h.vm().paused, len(h.agent.restored))
	}
	t0 := time.Now()
	if err := inst.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.vm().paused || len(h.agent.restored) != 1 || len(h.agent.restored[0].Entropy) != 64 ||
		time.Unix(0, h.agent.restored[0].UnixNanos).Before(t0) {
		t.Errorf("after Resume: paused %v, Restored calls %+v", h.vm().paused, h.agent.restored)
	}
}
