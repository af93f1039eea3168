package runtime

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestChooseDriver(t *testing.T) {
	kvm := vmm.Accel{Name: "kvm", Reason: "kvm_intel loaded"}
	tcg := vmm.Accel{Name: "tcg", Reason: "/dev/kvm is PVM"}
	defer func(f func(string) (string, error)) { lookPath = f }(lookPath)
	for _, tc := range []struct {
		name      string
		vmm       string
		accel     vmm.Accel
		installed []string
		want      string
		wantErr   string
	}{
		{"auto picks chv with kvm", "auto", kvm, []string{"cloud-hypervisor", "qemu-system-x86_64"}, "cloud-hypervisor", ""},
		{"auto falls back to qemu without kvm", "auto", tcg, []string{"cloud-hypervisor", "qemu-system-x86_64"}, "qemu", ""},
		{"auto qemu without chv", "auto", kvm, []string{"qemu-system-x86_64"}, "qemu", ""},
		{"auto nothing", "auto", tcg, nil, "", "no usable vmm"},
		{"chv needs kvm", "cloud-hypervisor", tcg, []string{"cloud-hypervisor"}, "", "needs KVM: /dev/kvm is PVM"},
		{"explicit qemu", "qemu", tcg, nil, "qemu", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookPath = func(name string) (string, error) {
				for _, i := range tc.installed {
					if i == name {
						return "/usr/bin/" + name, nil
					}
				}
				return "", errors.New("not found")
			}
			got, err := chooseDriver(Config{VMM: tc.vmm}, tc.accel)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestModuleGroupsAndCmdline(t *testing.T) {
	if g := moduleGroups("qemu", vmm.Config{Disks: []vmm.Disk{{}}}); !reflect.DeepEqual(g, []string{"mmio", "blk", "btrfs", "console"}) {
		t.Errorf("qemu groups %v", g)
	}
	g := moduleGroups("cloud-hypervisor", vmm.Config{Shares: []vmm.Share{{Mode: "virtiofs"}}, NICs: []vmm.NIC{{Tap: "t0"}}})
	if !reflect.DeepEqual(g, []string{"pci", "console", "net", "virtiofs", "vsock"}) {
		t.Errorf("chv groups %v", g)
	}
	if g := moduleGroups("qemu", vmm.Config{Shares: []vmm.Share{{Mode: "9p"}}}); g[len(g)-1] != "9p" {
		t.Errorf("9p share groups %v", g)
	}
	if got, want := guestCmdline([]string{"mmio", "blk"}, true, true, false), "initos.load=mmio,blk initos.root=/dev/vda initos.rootfstype=btrfs initos.debug=1 earlyprintk=ttyS0"; got != want {
		t.Errorf("cmdline %q, want %q", got, want)
	}
	if got, want := guestCmdline([]string{"mmio", "virtiofs"}, false, false, true), "initos.load=mmio,virtiofs initos.pid1=handoff"; got != want {
		t.Errorf("cmdline without a disk %q, want %q", got, want)
	}
}

func TestVMSize(t *testing.T) {
	c := Config{MemoryMiB: 512, CPUs: 1}
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name     string
		res      *specs.LinuxResources
		ann      map[string]string
		mem, cpu int
	}{
		{"no resources", nil, nil, 512, 1},
		{"memory limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}, nil, 1024, 1},
		{"tiny memory gets the minimum", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(8 << 20)}}, nil, MinMemoryMiB, 1},
		{"quota 1.5 cpus rounds up", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}, nil, 512, 2},
		{"cpuset counts", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2,5"}}, nil, 512, 4},
		{"bad cpuset keeps the default", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "3-1"}}, nil, 512, 1},
		{"pod sandbox: the guest's memory plus the containers'", nil, map[string]string{
			annotationSandboxMemory: "268435456", annotationSandboxCPUQuota: "250000", annotationSandboxCPUPeriod: "100000"}, 768, 3},
		{"pod sandbox without totals (zeros)", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}, map[string]string{
			annotationSandboxMemory: "0", annotationSandboxCPUQuota: "0", annotationSandboxCPUPeriod: "0"}, 1024, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.Spec{Linux: &specs.Linux{Resources: tc.res}, Annotations: tc.ann}
			mem, cpu := vmSize(c, s)
			if mem != tc.mem || cpu != tc.cpu {
				t.Fatalf("vmSize = %d MiB, %d cpus; want %d, %d", mem, cpu, tc.mem, tc.cpu)
			}
		})
	}
}
