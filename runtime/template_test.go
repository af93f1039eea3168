package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestCloneable(t *testing.T) {
	for driver, want := range map[string]string{"qemu": "", "cloud-hypervisor": "", "firecracker": "the firecracker driver does not restore templates"} {
		if err := cloneable(driver); want == "" && err != nil || want != "" && (err == nil || err.Error() != want) {
			t.Errorf("cloneable(%s) = %v, want %q", driver, err, want)
		}
	}
}

func TestTemplateKey(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd")
	for _, f := range []string{kernel, initrd} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Any executable stands for qemu: its stat is what counts.
	c := Config{QemuBinary: "/bin/sh"}
	tcg := vmm.Accel{Name: vmm.AccelTCG}
	base := vmm.Config{ID: "a", Kernel: kernel, Initrd: initrd, MemoryMiB: 512, CPUs: 1, Cmdline: "initos.load=mmio,console,9p",
		StateDir: "/run/a", ConsoleLog: "/run/a/console.log",
		Shares: []vmm.Share{{Dir: "/bundle/a/rootfs", Tag: "initos-root", Mode: vmm.Share9p}}}
	key := func(edit func(*vmm.Config), accel vmm.Accel) string {
		t.Helper()
		v := base
		v.Shares = append([]vmm.Share(nil), base.Shares...)
		if edit != nil {
			edit(&v)
		}
		k, err := templateKey(c, "qemu", accel, v)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key(nil, tcg)
	same := map[string]func(*vmm.Config){
		"another container":       func(v *vmm.Config) { v.ID, v.StateDir, v.ConsoleLog = "b", "/run/b", "/run/b/console.log" },
		"another rootfs":          func(v *vmm.Config) { v.Shares[0].Dir = "/bundle/b/rootfs" },
		"another tap and its mac": func(v *vmm.Config) { v.Netns = "/run/netns/x" },
	}
	withDisk := func(v *vmm.Config) { v.Disks = []vmm.Disk{{Path: "/disks/a.img", Serial: rootDiskSerial}} }
	kd := key(withDisk, tcg)
	if k := key(func(v *vmm.Config) { withDisk(v); v.Disks[0].Path = "/disks/b.img" }, tcg); k != kd {
		t.Error("another container's disk image: another key")
	}
	for name, edit := range same {
		if k := key(edit, tcg); k != k0 {
			t.Errorf("%s: another key", name)
		}
	}
	differ := map[string]func(*vmm.Config){
		"memory":    func(v *vmm.Config) { v.MemoryMiB = 1024 },
		"cpus":      func(v *vmm.Config) { v.CPUs = 2 },
		"cmdline":   func(v *vmm.Config) { v.Cmdline += " initos.debug=1" },
		"a share":   func(v *vmm.Config) { v.Shares = append(v.Shares, vmm.Share{Tag: "initos-share", Mode: vmm.Share9p}) },
		"share tag": func(v *vmm.Config) { v.Shares[0].Tag = "other" },
		"a nic":     func(v *vmm.Config) { v.NICs = []vmm.NIC{{Tap: "t", MAC: "02:00:00:00:00:01"}} },
		"a disk":    withDisk,
		"modules":   func(v *vmm.Config) { v.Modules = "/k/lib/modules/6.1.0-57-amd64" },
	}
	slot := func(v *vmm.Config) {
		withDisk(v)
		v.Disks = append(v.Disks, vmm.Disk{Path: "/s/slot1.img", Serial: "initos-s1", Slot: true})
	}
	if k := key(slot, tcg); k == kd {
		t.Error("a pod's disk slot: the same key")
	}
	for name, edit := range differ {
		if k := key(edit, tcg); k == k0 {
			t.Errorf("%s: the same key", name)
		}
	}
	if k := key(nil, vmm.Accel{Name: vmm.AccelKVM}); k == k0 {
		t.Error("another accelerator: the same key")
	}
	// A rebuilt initrd (a new agent) is another template.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(initrd, []byte("yy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if k := key(nil, tcg); k == k0 {
		t.Error("a changed initrd: the same key")
	}
}

// TestTemplateKeyDriver: a template is its driver's, keyed by that
// driver's binary.
func TestTemplateKeyDriver(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := vmm.Config{ID: "a", Kernel: kernel, Initrd: kernel, MemoryMiB: 512, CPUs: 1}
	kvm := vmm.Accel{Name: vmm.AccelKVM}
	keyOf := func(c Config, driver string) (string, error) { return templateKey(c, driver, kvm, v) }
	both := Config{QemuBinary: "/bin/sh", CloudHypervisorBinary: "/bin/sh"}
	kq, err := keyOf(both, "qemu")
	if err != nil {
		t.Fatal(err)
	}
	kc, err := keyOf(both, "cloud-hypervisor")
	if err != nil || kc == kq {
		t.Errorf("cloud-hypervisor's key = %s, %v; want one of its own (qemu's %s)", kc, err, kq)
	}
	if k, err := keyOf(Config{QemuBinary: "/bin/sh", CloudHypervisorBinary: "/bin/true"}, "cloud-hypervisor"); err != nil || k == kc {
		t.Errorf("another cloud-hypervisor binary: key %s, %v; want another key", k, err)
	}
	if _, err := keyOf(Config{QemuBinary: "/bin/sh", CloudHypervisorBinary: "/nonexistent/ch"}, "cloud-hypervisor"); err == nil || !strings.Contains(err.Error(), "finding cloud-hypervisor") {
		t.Errorf("key without cloud-hypervisor's binary: %v", err)
	}
}

// TestTemplateBuildFailure: a template that fails to build is not tried
// again by the next start, which fails at once naming the first failure.
func TestTemplateBuildFailure(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd")
	for _, f := range []string{kernel, initrd} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := Config{QemuBinary: "/bin/sh", DataDir: filepath.Join(dir, "data"), BootTimeout: Duration(time.Second)}
	vcfg := vmm.Config{ID: "a", Kernel: kernel, Initrd: initrd, MemoryMiB: 512, CPUs: 1}
	calls := 0
	newVM := func(string, vmm.Config, Config) (VM, error) {
		calls++
		return nil, errors.New("no vmm here")
	}
	ctx := context.Background()
	_, _, err := templateSnapshot(ctx, c, newVM, "qemu", vmm.Accel{Name: vmm.AccelTCG}, vcfg)
	if err == nil || !strings.Contains(err.Error(), "no vmm here") {
		t.Fatalf("first start: %v", err)
	}
	_, _, err = templateSnapshot(ctx, c, newVM, "qemu", vmm.Accel{Name: vmm.AccelTCG}, vcfg)
	if err == nil || !strings.Contains(err.Error(), "failed to build") || !strings.Contains(err.Error(), "no vmm here") {
		t.Fatalf("second start: %v", err)
	}
	if calls != 1 {
		t.Errorf("the template was built %d times, want 1", calls)
	}
	if builds, _ := filepath.Glob(filepath.Join(c.templatesDir(), "*.build")); len(builds) != 0 {
		t.Errorf("build directories left: %v", builds)
	}
}

func TestPruneTemplates(t *testing.T) {
	root := t.TempDir()
	var names []string
	for i := 0; i < 7; i++ {
		name := strings.Repeat(string(rune('a'+i)), 64)
		names = append(names, name)
		if err := os.Mkdir(filepath.Join(root, name), 0o700); err != nil {
			t.Fatal(err)
		}
		used := time.Now().Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(filepath.Join(root, name), used, used); err != nil {
			t.Fatal(err)
		}
	}
	// The oldest is the one just built: kept whatever its time.
	pruneTemplates(root, names[0])
	var left []string
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		left = append(left, e.Name()[:1])
	}
	// names[0] plus the keepTemplates-1 most recently used (g, f, e).
	if got := strings.Join(left, ""); got != "aefg" {
		t.Errorf("left %q, want aefg", got)
	}
}

// TestBootFromTemplate boots containers with templates on (fake VMs): the
// first start boots and saves the shape's template and restores a clone of
// it, the next restores the same template; a clone the agent refuses drops
// the template and the start boots, with a warning.
func TestBootFromTemplate(t *testing.T) {
	for _, fs := range []string{vmm.Share9p, vmm.ShareVirtiofs} {
		t.Run(fs, func(t *testing.T) { testBootFromTemplate(t, fs) })
	}
}

// testBootFromTemplate: the first start builds the template and restores
// a clone of it, the second only restores, and a clone its agent refuses
// drops the template and boots. A clone's module groups are its
// template's; a virtiofs clone's shares are waited for in Setup.
func testBootFromTemplate(t *testing.T, fs string) {
	h, _, c := sharedRootHost(t)
	c.ShareFS, c.Templates, c.QemuBinary = fs, true, "/bin/sh"
	h.vmScript = fakeVMScript{console: []string{"initos-agent: ready"}}
	ctx := context.Background()
	start := func(id string) *Instance {
		t.Helper()
		inst, err := boot(ctx, c, loadBundle(t, nil), id, mkStateDir(t, c, id), false, h.deps())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = inst.Shutdown(context.Background(), 5*time.Second) })
		return inst
	}

	first := start("c1")
	if !first.Timings.Restored || !first.Timings.TemplateBuilt || len(first.Warnings) != 0 {
		t.Fatalf("first start: timings %+v, warnings %q", first.Timings, first.Warnings)
	}
	tpl, clone := h.vmCfgs[0], h.vmCfgs[1]
	if tpl.Template == nil || tpl.RestoreFrom != nil || !h.vms[0].saved || !h.vms[0].hasExited() {
		t.Errorf("template vm %+v: saved %v, exited %v", tpl, h.vms[0].saved, h.vms[0].hasExited())
	}
	if tpl.Shares[0].Dir == clone.Shares[0].Dir || !strings.HasPrefix(tpl.Shares[0].Dir, c.templatesDir()) {
		t.Errorf("the template shares %q, the clone %q", tpl.Shares[0].Dir, clone.Shares[0].Dir)
	}
	dir := filepath.Dir(clone.RestoreFrom.RAM)
	if clone.RestoreFrom == nil || clone.Template != nil || filepath.Dir(dir) != c.templatesDir() {
		t.Errorf("clone vm restores from %+v", clone.RestoreFrom)
	}
	pci := strings.Contains(tpl.Cmdline, "initos.load=mmio,pci,")
	if pci != (fs == vmm.ShareVirtiofs) || clone.Cmdline != tpl.Cmdline {
		t.Errorf("template command line %q (pci: %v), clone's %q", tpl.Cmdline, pci, clone.Cmdline)
	}
	if wait := h.agent.setups[0].RootShare.WaitMillis; (wait > 0) != (fs == vmm.ShareVirtiofs) {
		t.Errorf("Setup waits %d ms for the %s root share", wait, fs)
	}
	if n := len(h.agent.restored); n != 1 || len(h.agent.restored[0].Entropy) != 64 ||
		time.Since(time.Unix(0, h.agent.restored[0].UnixNanos)) > time.Minute {
		t.Errorf("Restored calls %+v", h.agent.restored)
	}

	second := start("c2")
	if !second.Timings.Restored || second.Timings.TemplateBuilt || len(h.vmCfgs) != 3 || h.vmCfgs[2].RestoreFrom == nil {
		t.Fatalf("second start: timings %+v, %d vms", second.Timings, len(h.vmCfgs))
	}

	// The agent refuses: the template is dropped, the start boots.
	h.agent.mu.Lock()
	h.agent.restoredErr = errors.New("refused")
	h.agent.mu.Unlock()
	third := start("c3")
	if third.Timings.Restored || len(third.Warnings) != 1 || !strings.Contains(third.Warnings[0], "refused") ||
		!strings.Contains(third.Warnings[0], "booting instead") {
		t.Fatalf("third start: timings %+v, warnings %q", third.Timings, third.Warnings)
	}
	if booted := h.vmCfgs[len(h.vmCfgs)-1]; booted.RestoreFrom != nil || booted.Template != nil || strings.Contains(booted.Cmdline, "pci") {
		t.Errorf("the fallback vm %+v is not a booted one", booted)
	}
	if wait := h.agent.setups[len(h.agent.setups)-1].RootShare.WaitMillis; wait != 0 {
		t.Errorf("a booted vm's Setup waits %d ms for its root share", wait)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused template is still there: %v", err)
	}
	if !h.vms[len(h.vms)-2].hasExited() {
		t.Error("the refused clone still runs")
	}
}

// TestBootFromTemplateDisk: a disk root's template has an empty disk in
// its place; the clone restores with the container's image, and its Setup
// finds the root by serial (the agent waits for its size); a booted VM's
// Setup names the device.
func TestBootFromTemplateDisk(t *testing.T) {
	h := newFakeHost(t)
	c := testConfig(t)
	c.Templates, c.QemuBinary = true, "/bin/sh"
	h.vmScript = fakeVMScript{console: []string{"initos-agent: ready"}}
	inst, err := boot(context.Background(), c, loadBundle(t, nil), "c1", mkStateDir(t, c, "c1"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inst.Shutdown(context.Background(), 5*time.Second) })
	if !inst.Timings.Restored || len(h.vmCfgs) != 2 {
		t.Fatalf("timings %+v, %d vms", inst.Timings, len(h.vmCfgs))
	}
	tpl, clone := h.vmCfgs[0], h.vmCfgs[1]
	if len(tpl.Disks) != 1 || !strings.HasPrefix(tpl.Disks[0].Path, c.templatesDir()) || tpl.Disks[0].Serial != rootDiskSerial {
		t.Errorf("the template's disks %+v", tpl.Disks)
	}
	if len(clone.Disks) != 1 || clone.Disks[0].Path != inst.Disk || clone.Disks[0].Serial != rootDiskSerial {
		t.Errorf("the clone's disks %+v, want its image %q", clone.Disks, inst.Disk)
	}
	if s := h.agent.setups[0]; s.RootSerial != rootDiskSerial || s.RootDevice != "" || s.RootFstype != "btrfs" {
		t.Errorf("a clone's Setup: root device %q, serial %q, fstype %q", s.RootDevice, s.RootSerial, s.RootFstype)
	}

	c.Templates = false
	booted, err := boot(context.Background(), c, loadBundle(t, nil), "c2", mkStateDir(t, c, "c2"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = booted.Shutdown(context.Background(), 5*time.Second) })
	if s := h.agent.setups[len(h.agent.setups)-1]; s.RootDevice != "/dev/vda" || s.RootSerial != "" {
		t.Errorf("a booted vm's Setup: root device %q, serial %q", s.RootDevice, s.RootSerial)
	}
}

// TestCloneOOMScoreAdj: a clone's VMM gets its container's oomScoreAdj;
// the template's, which serves every container of its shape, does not.
func TestCloneOOMScoreAdj(t *testing.T) {
	h, _, c := sharedRootHost(t)
	c.Templates, c.QemuBinary = true, "/bin/sh"
	h.vmScript = fakeVMScript{console: []string{"initos-agent: ready"}}
	b := loadBundle(t, func(s *specs.Spec) { s.Process.OOMScoreAdj = intp(500) })
	inst, err := boot(context.Background(), c, b, "c1", mkStateDir(t, c, "c1"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Shutdown(context.Background(), 5*time.Second)
	if !inst.Timings.Restored || len(h.vmCfgs) != 2 {
		t.Fatalf("timings %+v, %d vms: want a template and its clone", inst.Timings, len(h.vmCfgs))
	}
	if tpl, clone := h.vmCfgs[0].OOMScoreAdj, h.vmCfgs[1].OOMScoreAdj; tpl != nil || clone == nil || *clone != 500 {
		t.Errorf("oomScoreAdj: the template's %v, want none; the clone's %v, want 500", tpl, clone)
	}
}
