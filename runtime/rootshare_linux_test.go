package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// sharedRootHost is a fake host whose rootfs shares go through fakeMounts
// and whose virtiofsd exists.
func sharedRootHost(t *testing.T) (*fakeHost, *fakeMounts, Config) {
	h := newFakeHost(t)
	f := &fakeMounts{}
	f.install(t)
	old := findVirtiofsd
	findVirtiofsd = func(string) (string, error) { return "/usr/lib/qemu/virtiofsd", nil }
	t.Cleanup(func() { findVirtiofsd = old })
	c := testConfig(t)
	c.Rootfs = RootfsShare
	return h, f, c
}

// rootShareMounts are the mounts that make the root share of state dir sd a
// shared mount of its own.
func rootShareMounts(sd string) []string {
	dir := filepath.Join(sd, "root")
	return []string{"bind " + dir + " root", "shared  root"}
}

func TestBootSharedRoot(t *testing.T) {
	for _, readonly := range []bool{false, true} {
		t.Run(map[bool]string{false: "read-write", true: "read-only"}[readonly], func(t *testing.T) {
			h, f, c := sharedRootHost(t)
			b := loadBundle(t, func(s *specs.Spec) { s.Root.Readonly = readonly })
			sd := mkStateDir(t, c, "web")
			inst, err := boot(context.Background(), c, b, "web", sd, false, h.deps())
			if err != nil {
				t.Fatal(err)
			}
			cfg := h.vmCfgs[0]
			if len(cfg.Disks) != 0 || len(h.images) != 0 || inst.Disk != "" {
				t.Errorf("disks %+v, images %q, instance disk %q: want none", cfg.Disks, h.images, inst.Disk)
			}
			want := []vmm.Share{{Dir: filepath.Join(sd, "root"), Tag: "initos-root", Mode: vmm.ShareVirtiofs, Cache: vmm.CacheAuto, Xattr: true}}
			if !reflect.DeepEqual(cfg.Shares, want) {
				t.Errorf("vm shares %+v, want %+v", cfg.Shares, want)
			}
			if want := "initos.load=mmio,console,virtiofs"; cfg.Cmdline != want {
				t.Errorf("cmdline %q, want %q (no disk, no btrfs)", cfg.Cmdline, want)
			}
			s := h.agent.setups[0]
			if s.RootShare == nil || s.RootShare.Tag != "initos-root" || s.RootShare.MountPoint != rootShareMount || !s.RootShare.Mmap ||
				s.RootPath != "c" || s.RootDevice != "" || s.RootFstype != "" || s.RootAttrs != nil || s.RootReadonly != readonly {
				t.Errorf("setup %+v", s)
			}
			// Writable for a read-only root too: the agent makes the
			// mount points, then remounts read-only.
			wantMounts := append(rootShareMounts(sd), "bind "+b.Rootfs+" c")
			if !reflect.DeepEqual(f.mounts, wantMounts) {
				t.Errorf("host mounts %q, want %q", f.mounts, wantMounts)
			}
			if err := inst.Shutdown(context.Background(), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.unmounts, []string{"c", "root"}) {
				t.Errorf("unmounts %q, want the root entry, then the share", f.unmounts)
			}
			if _, err := os.Stat(filepath.Join(sd, "root")); !os.IsNotExist(err) {
				t.Errorf("root share dir left behind: %v", err)
			}
			if _, err := os.Stat(b.Rootfs); err != nil {
				t.Errorf("the bundle's rootfs is gone: %v", err)
			}
			h.assertNothingLeft(c)
		})
	}
}

func TestBootSharedRootFailures(t *testing.T) {
	t.Run("rootfs missing", func(t *testing.T) {
		h, f, c := sharedRootHost(t)
		b := loadBundle(t, nil)
		if err := os.RemoveAll(b.Rootfs); err != nil {
			t.Fatal(err)
		}
		sd := mkStateDir(t, c, "c1")
		_, err := boot(context.Background(), c, b, "c1", sd, false, h.deps())
		if err == nil || !strings.Contains(err.Error(), `container "c1": sharing the rootfs`) {
			t.Fatalf("error %v, want one naming the rootfs", err)
		}
		if h.vmCount() != 0 || !reflect.DeepEqual(f.mounts, rootShareMounts(sd)) || !reflect.DeepEqual(f.unmounts, []string{"root"}) {
			t.Errorf("%d VMs, mounts %q, unmounts %q: want none but the share's, undone", h.vmCount(), f.mounts, f.unmounts)
		}
		if _, err := os.Stat(filepath.Join(sd, "root")); !os.IsNotExist(err) {
			t.Errorf("root share dir left behind: %v", err)
		}
	})
	t.Run("bind fails", func(t *testing.T) {
		h, f, c := sharedRootHost(t)
		b := loadBundle(t, nil)
		f.failOn = b.Rootfs
		sd := mkStateDir(t, c, "c1")
		_, err := boot(context.Background(), c, b, "c1", sd, false, h.deps())
		if err == nil || !strings.Contains(err.Error(), "binding the rootfs") {
			t.Fatalf("error %v, want the bind's", err)
		}
		if _, err := os.Stat(filepath.Join(sd, "root")); !os.IsNotExist(err) {
			t.Errorf("root share dir left behind: %v", err)
		}
	})
	t.Run("no virtiofsd on cloud-hypervisor", func(t *testing.T) {
		_, _, c := sharedRootHost(t)
		findVirtiofsd = func(string) (string, error) { return "", vmm.ErrNoVirtiofsd }
		if _, err := shareFS(c, "cloud-hypervisor"); err == nil {
			t.Fatal("shareFS without virtiofsd on cloud-hypervisor succeeded")
		}
		if fs, err := shareFS(c, "qemu"); err != nil || fs != vmm.Share9p {
			t.Errorf("shareFS without virtiofsd on qemu = %q, %v; want 9p", fs, err)
		}
	})
}

// TestPodMemberSharedRoot: a pod member's rootfs joins the sandbox's root
// share (no disk, no hotplug) and leaves it at removal.
func TestPodMemberSharedRoot(t *testing.T) {
	h, f, c := sharedRootHost(t)
	sb := loadBundle(t, nil)
	sd := mkStateDir(t, c, "pod")
	inst, err := boot(context.Background(), c, sb, "pod", sd, true, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Shutdown(context.Background(), time.Second)
	if n := len(h.vmCfgs[0].Disks); n != 0 {
		t.Errorf("sandbox VM has %d disks, want no slots with shared roots", n)
	}
	mb := loadBundle(t, func(s *specs.Spec) { s.Root.Readonly = true })
	m, err := inst.AddContainer(context.Background(), c, mb, "app")
	if err != nil {
		t.Fatal(err)
	}
	s := h.agent.setups[len(h.agent.setups)-1]
	if s.ContainerId != "app" || s.RootShare == nil || !strings.HasPrefix(s.RootPath, "m-") || s.RootSerial != "" || !s.OwnPidNamespace {
		t.Errorf("member setup %+v", s)
	}
	entry := filepath.Join(sd, "root", s.RootPath)
	if _, err := os.Stat(entry); err != nil {
		t.Errorf("member entry: %v", err)
	}
	// The sandbox's share of bind mounts is a shared mount too: the
	// members' binds come after boot.
	share := filepath.Join(sd, "share")
	wantMounts := append([]string{"bind " + share + " share", "shared  share"}, rootShareMounts(sd)...)
	wantMounts = append(wantMounts, "bind "+sb.Rootfs+" c", "bind "+mb.Rootfs+" "+s.RootPath)
	if !reflect.DeepEqual(f.mounts, wantMounts) {
		t.Errorf("host mounts %q, want %q", f.mounts, wantMounts)
	}
	if err := m.Shutdown(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Errorf("member entry left after its removal: %v", err)
	}
	if !reflect.DeepEqual(f.unmounts, []string{s.RootPath}) {
		t.Errorf("unmounts %q, want only the member's entry", f.unmounts)
	}
}

// TestPodOOMScore: a pod's VM starts with its sandbox's oomScoreAdj and
// takes the lowest of its members' as they come and go; a member whose
// value the host refuses is not added, and nothing of it is left.
func TestPodOOMScore(t *testing.T) {
	h, _, c := sharedRootHost(t)
	withAdj := func(adj *int) *bundle.Bundle {
		return loadBundle(t, func(s *specs.Spec) { s.Process.OOMScoreAdj = adj })
	}
	ctx := context.Background()
	inst, err := boot(ctx, c, withAdj(intp(-998)), "pod", mkStateDir(t, c, "pod"), true, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Shutdown(ctx, time.Second)
	if adj := h.vmCfgs[0].OOMScoreAdj; adj == nil || *adj != -998 {
		t.Errorf("the sandbox's VM starts with oomScoreAdj %v, want -998", adj)
	}
	vm := h.vm()
	add := func(id string, adj *int) *Instance {
		t.Helper()
		m, err := inst.AddContainer(ctx, c, withAdj(adj), id)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := add("a", intp(700))
	b := add("b", intp(300))
	add("c", nil)
	if got, want := vm.oomAdjusted(), []int{700, 300}; !reflect.DeepEqual(got, want) {
		t.Errorf("with members 700, 300 and none: the VM got %v, want %v", got, want)
	}
	if err := b.Shutdown(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := vm.oomAdjusted(), []int{700, 300, 700}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the 300 member left: the VM got %v, want %v", got, want)
	}

	vm.mu.Lock()
	vm.script.oomErr = errors.New("permission denied")
	vm.mu.Unlock()
	setups := len(h.agent.setups)
	if _, err := inst.AddContainer(ctx, c, withAdj(intp(-500)), "d"); err == nil ||
		!strings.Contains(err.Error(), `container "d"'s oomScoreAdj -500: permission denied`) {
		t.Fatalf("adding a member the host refuses: error %v", err)
	}
	if n := len(h.agent.setups); n != setups {
		t.Errorf("the refused member was set up in the guest (%d setups, was %d)", n, setups)
	}
	vm.mu.Lock()
	vm.script.oomErr = nil
	vm.mu.Unlock()
	if err := a.Shutdown(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := vm.oomAdjusted(), []int{700, 300, 700, -998}; !reflect.DeepEqual(got, want) {
		t.Errorf("after the last member with a value left: the VM got %v, want %v", got, want)
	}
}
