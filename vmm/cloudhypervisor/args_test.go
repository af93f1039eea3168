package cloudhypervisor

import (
	"errors"
	"strings"
	"testing"

	"github.com/initos-runtime/initos-runtime/vmm"
)

func baseConfig() vmm.Config {
	return vmm.Config{
		ID: "c1", Kernel: "/k/vmlinux", Initrd: "/k/initrd.img", Cmdline: "initos.load=pci,blk",
		Disks: []vmm.Disk{{Path: "/d/root.img"}}, MemoryMiB: 512, CPUs: 2,
		StateDir: "/run/x", ConsoleLog: "/run/x/console.log",
	}
}

// golden command lines, one per config shape.
func TestBuildArgs(t *testing.T) {
	head := []string{"--api-socket", "path=/run/x/api.sock", "--kernel", "/k/vmlinux", "--initramfs", "/k/initrd.img",
		"--cmdline", "console=ttyS0 panic=-1 cryptomgr.notests noreplace-smp initos.load=pci,blk", "--cpus", "boot=2"}
	serial := []string{"--serial", "file=/run/x/console.log", "--console", "off"}
	vsock := []string{"--vsock", "cid=3,socket=/run/x/vsock.sock"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
		want   []string
	}{
		{"plain", func(c *vmm.Config) {},
			cat(head, []string{"--memory", "size=512M"}, serial, []string{"--disk", "path=/d/root.img"}, vsock)},
		{"readonly second disk", func(c *vmm.Config) {
			c.Disks = append(c.Disks, vmm.Disk{Path: "/d/data.img", ReadOnly: true})
		}, cat(head, []string{"--memory", "size=512M"}, serial, []string{"--disk", "path=/d/root.img", "path=/d/data.img,readonly=on"}, vsock)},
		{"virtiofs share", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
		}, cat(head, []string{"--memory", "size=512M,shared=on"}, serial, []string{"--disk", "path=/d/root.img"}, vsock,
			[]string{"--fs", "tag=z,socket=/run/x/virtiofs0.sock"})},
		{"root and volume shares, no disk", func(c *vmm.Config) {
			c.Disks = nil
			c.Shares = []vmm.Share{{Dir: "/run/x/root", Tag: "r", Mode: vmm.ShareVirtiofs, Cache: vmm.CacheAuto}, {Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
		}, cat(head, []string{"--memory", "size=512M,shared=on"}, serial, vsock,
			[]string{"--fs", "tag=r,socket=/run/x/virtiofs0.sock", "tag=z,socket=/run/x/virtiofs1.sock"})},
		{"modules share: one more virtiofs share, named on the command line", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
			c.Modules = "/k/lib/modules/6.1.0-57-amd64"
		}, cat(head[:6], []string{"--cmdline", "console=ttyS0 panic=-1 cryptomgr.notests noreplace-smp initos.modules=virtiofs initos.load=pci,blk", "--cpus", "boot=2"},
			[]string{"--memory", "size=512M,shared=on"}, serial, []string{"--disk", "path=/d/root.img"}, vsock,
			[]string{"--fs", "tag=z,socket=/run/x/virtiofs0.sock", "tag=initos-modules,socket=/run/x/virtiofs1.sock"})},
		{"modules share alone: shared memory", func(c *vmm.Config) {
			c.Modules = "/k/mods"
		}, cat(head[:6], []string{"--cmdline", "console=ttyS0 panic=-1 cryptomgr.notests noreplace-smp initos.modules=virtiofs initos.load=pci,blk", "--cpus", "boot=2"},
			[]string{"--memory", "size=512M,shared=on"}, serial, []string{"--disk", "path=/d/root.img"}, vsock,
			[]string{"--fs", "tag=initos-modules,socket=/run/x/virtiofs0.sock"})},
		{"two nics", func(c *vmm.Config) {
			c.NICs = []vmm.NIC{{Tap: "tap0", MAC: "02:00:00:00:00:01"}, {Tap: "tap1", MAC: "02:00:00:00:00:02"}}
		}, cat(head, []string{"--memory", "size=512M"}, serial, []string{"--disk", "path=/d/root.img"}, vsock,
			[]string{"--net", "tap=tap0,mac=02:00:00:00:00:01", "tap=tap1,mac=02:00:00:00:00:02"})},
		{"template: no disk, share or nic, memory shared for the clones' shares", func(c *vmm.Config) {
			c.Template = &vmm.Snapshot{RAM: "/t/ram", State: "/t/state"}
			c.Shares = []vmm.Share{{Dir: "/t/share0", Tag: "z", Mode: vmm.ShareVirtiofs}}
			c.NICs = []vmm.NIC{{MAC: "02:00:00:00:00:01"}}
		}, cat(head, []string{"--memory", "size=512M,shared=on"}, serial, vsock)},
		{"clone: restored from its own directory", func(c *vmm.Config) {
			c.RestoreFrom = &vmm.Snapshot{RAM: "/t/ram", State: "/t/state"}
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
		}, []string{"--api-socket", "path=/run/x/api.sock", "--restore", "source_url=file:///run/x/restore"}},
		{"no initrd, no cmdline, no disk", func(c *vmm.Config) { c.Initrd, c.Cmdline, c.Disks = "", "", nil },
			cat([]string{"--api-socket", "path=/run/x/api.sock", "--kernel", "/k/vmlinux",
				"--cmdline", "console=ttyS0 panic=-1 cryptomgr.notests noreplace-smp", "--cpus", "boot=2", "--memory", "size=512M"}, serial, vsock)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(&c)
			got := buildArgs(&c)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("buildArgs:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
		want   string
	}{
		{"ok", func(c *vmm.Config) {}, ""},
		{"virtiofs ok", func(c *vmm.Config) { c.Shares = []vmm.Share{{Dir: "/a,b", Tag: "z", Mode: vmm.ShareVirtiofs}} }, ""},
		{"9p", func(c *vmm.Config) { c.Shares = []vmm.Share{{Dir: "/s", Tag: "z", Mode: vmm.Share9p}} }, `share "z": mode "9p"`},
		{"comma in disk", func(c *vmm.Config) { c.Disks[0].Path = "/d/a,b.img" }, `path "/d/a,b.img"`},
		{"clone without the snapshot's config", func(c *vmm.Config) { c.RestoreFrom = &vmm.Snapshot{RAM: "/none/ram", State: "/none/state"} },
			`snapshot: no configuration "/none/state.config"`},
		{"comma in console", func(c *vmm.Config) { c.ConsoleLog = "/run/x/c,l" }, `path "/run/x/c,l"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(&c)
			err := checkConfig(&c)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, vmm.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkConfig = %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestModuleGroups(t *testing.T) {
	tests := []struct {
		name string
		cfg  vmm.Config
		want string
	}{
		{"plain", vmm.Config{}, "pci,console,vsock"},
		{"disk", vmm.Config{Disks: []vmm.Disk{{}}}, "pci,blk,btrfs,console,vsock"},
		{"virtiofs and net", vmm.Config{Shares: []vmm.Share{{Mode: vmm.ShareVirtiofs}}, NICs: []vmm.NIC{{}}}, "pci,console,net,virtiofs,vsock"},
		// The guest loads virtiofs when its kernel first asks for a module.
		{"modules share", vmm.Config{Modules: "/k/mods"}, "pci,console,vsock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(ModuleGroups(&tt.cfg), ","); got != tt.want {
				t.Errorf("ModuleGroups = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestTemplateWithoutModulesShare: a template (and so its clones) carries
// no modules share under cloud-hypervisor, and its command line does not
// promise one; a booted VM carries it.
func TestTemplateWithoutModulesShare(t *testing.T) {
	booted := vmm.Config{ID: "a", Kernel: "/k", MemoryMiB: 512, CPUs: 1, StateDir: "/s", ConsoleLog: "/s/c", Modules: "/lib/modules/6.1"}
	tmpl := booted
	tmpl.Template = &vmm.Snapshot{}
	for _, tt := range []struct {
		name string
		cfg  vmm.Config
		want bool
	}{{"booted", booted, true}, {"template", tmpl, false}} {
		t.Run(tt.name, func(t *testing.T) {
			args := strings.Join(buildArgs(&tt.cfg), " ")
			hasFs := strings.Contains(args, "--fs ")
			hasArg := strings.Contains(KernelCmdline(&tt.cfg), vmm.ModulesArg+"=")
			if hasFs != tt.want || hasArg != tt.want {
				t.Errorf("--fs %t, %s on the command line %t; want both %t\n%s", hasFs, vmm.ModulesArg, hasArg, tt.want, args)
			}
		})
	}
}
