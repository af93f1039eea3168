package runtime

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/initos-runtime/initos-runtime/initrd"
	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestCheck(t *testing.T) {
	pvm := vmm.Accel{Name: vmm.AccelTCG, Reason: "no usable KVM for a stock kernel: /dev/kvm is PVM (kvm_pvm), stock kernels hang under it; using TCG"}
	kvm := vmm.Accel{Name: vmm.AccelKVM, Reason: "/dev/kvm opens and kvm_intel is loaded"}
	all := []string{"qemu-system-x86_64", "cloud-hypervisor", "mkfs.btrfs", "virtiofsd"}
	kernel := &initrd.Kernel{Release: "6.1.0-56-amd64", Vmlinuz: "/k/boot/vmlinuz-6.1.0-56-amd64"}
	noKernel := errors.New("no boot/vmlinuz-* under /k")
	noAgent := fmt.Errorf("%w: looked in [/usr/libexec/initos-runtime/initos-agent]", ErrNoAgent)

	type line struct {
		ok   bool
		want []string // substrings of the detail
	}
	for _, tc := range []struct {
		name      string
		vmm       string
		rootfs    string
		shareFS   string
		templates bool
		accel     vmm.Accel
		installed []string
		kernelErr error
		agentErr  error
		fuseErr   error
		hugeErr   error
		noHuge    bool
		wantOK    bool
		lines     map[string]line
	}{
		{
			name: "pvm host runs qemu under tcg", vmm: "auto", accel: pvm, installed: all, wantOK: true,
			lines: map[string]line{
				"kvm":              {false, []string{"kvm_pvm"}},
				"cloud-hypervisor": {true, []string{"/usr/bin/cloud-hypervisor", "unusable without KVM"}},
				"vmm":              {true, []string{"run under qemu", "TCG software emulation", "kvm_pvm"}},
				"kernel":           {true, []string{"Linux 6.1.0-56-amd64"}},
				"agent":            {true, []string{"/opt/initos-agent"}},
				"virtiofsd":        {true, []string{"/usr/bin/virtiofsd"}},
				"rootfs":           {true, []string{"shared with the VM over virtiofs", "engine's storage"}},
				"boot slots":       {true, []string{"at most", "one per CPU", "/d/boot-slots"}},
				"fuse":             {true, []string{"/dev/fuse", "list the container's processes"}},
				"huge pages":       {true, []string{"shared with virtiofsd", "is on 2048 KiB huge pages (tmpfs /r/ram)"}},
			},
		},
		{
			name: "no huge pages for shared RAM", vmm: "auto", accel: pvm, installed: all, wantOK: true,
			hugeErr: fmt.Errorf("%w: the host kernel has no transparent huge pages", errNoHugeRAM),
			lines:   map[string]line{"huge pages": {false, []string{"no transparent huge pages", "is a memfd on the host's small pages"}}},
		},
		{
			name: "huge pages off by config", vmm: "auto", accel: pvm, installed: all, wantOK: true, noHuge: true,
			lines: map[string]line{"huge pages": {false, []string{"memfd on the host's small pages", "(config noHugePages)"}}},
		},
		{
			name: "huge pages not needed with 9p shares", vmm: "auto", shareFS: "9p", accel: pvm, installed: all, wantOK: true,
			hugeErr: fmt.Errorf("%w: the host kernel has no transparent huge pages", errNoHugeRAM),
			lines:   map[string]line{"huge pages": {true, []string{"not needed: the shares are 9p", "anonymous memory"}}},
		},
		{
			name: "huge pages not used by cloud-hypervisor", vmm: "auto", accel: kvm, installed: all, wantOK: true,
			hugeErr: fmt.Errorf("%w: the host kernel has no transparent huge pages", errNoHugeRAM),
			lines:   map[string]line{"huge pages": {true, []string{"not used: cloud-hypervisor maps the VM's RAM itself"}}},
		},
		{
			name: "no fuse", vmm: "auto", accel: pvm, installed: all, wantOK: true,
			fuseErr: errors.New("opening /dev/fuse: no such file or directory"),
			lines:   map[string]line{"fuse": {false, []string{"opening /dev/fuse: no such file", "lists its VM's host processes"}}},
		},
		{
			name: "no virtiofsd: rootfs over 9p", vmm: "auto", accel: pvm, installed: []string{"qemu-system-x86_64"}, wantOK: true,
			lines: map[string]line{
				"virtiofsd":  {false, []string{"qemu-system-common"}},
				"rootfs":     {true, []string{"over 9p", "no virtiofsd", "engine's storage"}},
				"mkfs.btrfs": {false, []string{"btrfs-progs"}},
			},
		},
		{
			name: "no virtiofsd for cloud-hypervisor", vmm: "cloud-hypervisor", accel: kvm, installed: []string{"cloud-hypervisor"}, wantOK: false,
			lines: map[string]line{
				"vmm":    {true, []string{"cloud-hypervisor"}},
				"rootfs": {false, []string{"cannot share the rootfs", "virtiofsd"}},
			},
		},
		{
			name: "disk roots", vmm: "auto", rootfs: RootfsDisk, accel: pvm, installed: all, wantOK: true,
			lines: map[string]line{"rootfs": {true, []string{"copied into a btrfs disk", "lost when it is deleted"}}},
		},
		{
			name: "kvm host runs cloud-hypervisor", vmm: "auto", accel: kvm, installed: all, wantOK: true,
			lines: map[string]line{
				"kvm": {true, []string{"kvm_intel"}},
				"vmm": {true, []string{"run under cloud-hypervisor (KVM)"}},
			},
		},
		{
			name: "missing kernel", vmm: "auto", accel: pvm, installed: all, kernelErr: noKernel, wantOK: false,
			lines: map[string]line{
				"kernel": {false, []string{"no guest kernel under /k", "no boot/vmlinuz-*", "scripts/setup.sh"}},
				"vmm":    {true, nil},
			},
		},
		{
			name: "missing agent", vmm: "auto", accel: pvm, installed: all, agentErr: noAgent, wantOK: false,
			lines: map[string]line{"agent": {false, []string{"no guest agent binary", "/usr/libexec/initos-runtime/initos-agent"}}},
		},
		{
			name: "missing mkfs.btrfs with disk roots", vmm: "auto", rootfs: RootfsDisk, accel: pvm, installed: []string{"qemu-system-x86_64"}, wantOK: false,
			lines: map[string]line{
				"mkfs.btrfs": {false, []string{"mkfs.btrfs not found in PATH", "btrfs-progs"}},
				"vmm":        {true, []string{"qemu"}},
			},
		},
		{
			name: "no vmm at all", vmm: "auto", accel: pvm, installed: []string{"mkfs.btrfs"}, wantOK: false,
			lines: map[string]line{
				"qemu":       {false, []string{"qemu-system-x86_64 not found in PATH"}},
				"vmm":        {false, []string{"no usable vmm", "qemu-system-x86_64 not found"}},
				"huge pages": {false, []string{"not known: no usable VMM"}},
			},
		},
		{
			name: "templates off", vmm: "auto", accel: pvm, installed: all, wantOK: true,
			lines: map[string]line{"templates": {false, []string{"off:", "\"templates\": true"}}},
		},
		{
			name: "templates with 9p", vmm: "auto", accel: pvm, installed: all, shareFS: "9p", templates: true, wantOK: true,
			lines: map[string]line{"templates": {true, []string{"on: containers start by restoring", "9p shares: idle clones share", "/d/templates"}}},
		},
		{
			name: "templates with virtiofs", vmm: "auto", accel: pvm, installed: all, templates: true, wantOK: true,
			lines: map[string]line{"templates": {true, []string{"on: containers start by restoring", "virtiofs shares, hot-added", "a copy of the template's"}}},
		},
		{
			name: "templates with disk roots", vmm: "auto", rootfs: RootfsDisk, accel: pvm, installed: all, shareFS: "9p", templates: true, wantOK: true,
			lines: map[string]line{"templates": {true, []string{"on: containers start by restoring"}}},
		},
		{
			name: "templates under cloud-hypervisor", vmm: "auto", accel: kvm, installed: all, templates: true, wantOK: true,
			lines: map[string]line{"templates": {true, []string{"on: containers start by restoring", "cloud-hypervisor: each clone's memory is a copy",
				"hot-added after the restore", "tested only against a fake"}},
				"boot slots": {true, []string{"no limit", "with KVM"}}},
		},
		{
			name: "cloud-hypervisor asked for without kvm", vmm: "cloud-hypervisor", accel: pvm, installed: all, wantOK: false,
			lines: map[string]line{"vmm": {false, []string{"needs KVM", "kvm_pvm"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{VMM: tc.vmm, Rootfs: tc.rootfs, ShareFS: tc.shareFS, Templates: tc.templates, KernelRoot: "/k", DataDir: "/d", RAMDir: "/r/ram", NoHugePages: tc.noHuge}
			lookPath := func(name string) (string, error) {
				for _, i := range tc.installed {
					if i == name {
						return "/usr/bin/" + name, nil
					}
				}
				return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
			}
			d := checkDeps{
				detectAccel: func() vmm.Accel { return tc.accel },
				lookPath:    lookPath,
				findVirtiofsd: func(explicit string) (string, error) {
					if p, err := lookPath("virtiofsd"); err == nil {
						return p, nil
					}
					return "", fmt.Errorf("%w (looked for virtiofsd)", vmm.ErrNoVirtiofsd)
				},
				findKernel: func(root string) (*initrd.Kernel, error) {
					if root != c.KernelRoot {
						t.Errorf("findKernel(%q), want the config's %q", root, c.KernelRoot)
					}
					if tc.kernelErr != nil {
						return nil, tc.kernelErr
					}
					return kernel, nil
				},
				findAgent: func(Config) (string, error) {
					if tc.agentErr != nil {
						return "", tc.agentErr
					}
					return "/opt/initos-agent", nil
				},
				openFuse: func() error { return tc.fuseErr },
				hugePages: func(dir string) (string, error) {
					if dir != c.RAMDir {
						t.Errorf("hugePages(%q), want the config's %q", dir, c.RAMDir)
					}
					if tc.hugeErr != nil {
						return "", tc.hugeErr
					}
					return "on 2048 KiB huge pages (tmpfs " + dir + ")", nil
				},
			}
			rs, ok := check(c, d)
			if ok != tc.wantOK {
				t.Errorf("ok = %v, want %v; results %+v", ok, tc.wantOK, rs)
			}
			got := map[string]CheckResult{}
			for _, r := range rs {
				got[r.Name] = r
			}
			for _, name := range []string{"kvm", "qemu", "cloud-hypervisor", "vmm", "virtiofsd", "mkfs.btrfs", "rootfs", "fuse", "huge pages", "templates", "boot slots", "kernel", "agent"} {
				if _, ok := got[name]; !ok {
					t.Errorf("no %q line in %+v", name, rs)
				}
			}
			for name, r := range got {
				want := name != "kvm" && name != "qemu" && name != "cloud-hypervisor" && name != "virtiofsd" && name != "templates" && name != "boot slots" && name != "fuse" && name != "huge pages" &&
					(name != "mkfs.btrfs" || c.Rootfs == RootfsDisk)
				if r.Required != want {
					t.Errorf("%s: Required = %v, want %v", name, r.Required, want)
				}
			}
			for name, l := range tc.lines {
				r := got[name]
				if r.OK != l.ok {
					t.Errorf("%s: OK = %v, want %v (%s)", name, r.OK, l.ok, r.Detail)
				}
				for _, w := range l.want {
					if !strings.Contains(r.Detail, w) {
						t.Errorf("%s: detail %q does not contain %q", name, r.Detail, w)
					}
				}
			}
		})
	}
}
