package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestCloneable(t *testing.T) {
	p9 := []vmm.Share{{Tag: "initos-root", Mode: vmm.Share9p}}
	tests := []struct {
		name         string
		driver       string
		cfg          vmm.Config
		nicAfterBoot bool
		want         string // "" : cloneable
	}{
		{"9p shares", "qemu", vmm.Config{Shares: p9}, false, ""},
		{"a nic configured after the restore", "qemu", vmm.Config{Shares: p9, NICs: []vmm.NIC{{Tap: "t"}}}, true, ""},
		{"a nic configured at boot", "qemu", vmm.Config{Shares: p9, NICs: []vmm.NIC{{Tap: "t"}}}, false, "configured at boot"},
		{"a disk", "qemu", vmm.Config{Disks: []vmm.Disk{{Path: "/d"}}}, false, "disk image"},
		{"virtiofs", "qemu", vmm.Config{Shares: []vmm.Share{{Tag: "r", Mode: vmm.ShareVirtiofs}}}, false, `shareFS "9p"`},
		{"cloud-hypervisor", "cloud-hypervisor", vmm.Config{Shares: p9}, false, "does not restore templates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cloneable(tt.driver, tt.cfg, tt.nicAfterBoot)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("cloneable = %v, want %q", err, tt.want)
			}
		})
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
