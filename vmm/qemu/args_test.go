package qemu

import (
	"strings"
	"testing"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// golden command lines, one per config shape.
func TestBuildArgs(t *testing.T) {
	base := func() vmm.Config {
		return vmm.Config{
			ID: "c1", Kernel: "/k/vmlinux", Initrd: "/k/initrd.img", Cmdline: "initos.load=mmio,blk",
			Disks: []vmm.Disk{{Path: "/d/root.img"}}, MemoryMiB: 512, CPUs: 2,
			StateDir: "/run/x", ConsoleLog: "/run/x/console.log",
		}
	}
	head := func(machine, accel, cpu string) []string {
		return []string{"-M", machine, "-accel", accel, "-cpu", cpu, "-smp", "2", "-m", "512"}
	}
	common := []string{
		"-global", "virtio-mmio.force-legacy=false", "-nodefaults", "-no-reboot", "-nographic",
		"-chardev", "file,id=console,path=/run/x/console.log", "-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path=/run/x/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
		"-kernel", "/k/vmlinux", "-initrd", "/k/initrd.img",
		"-append", "console=ttyS0 panic=-1 tsc_early_khz=2095986 cryptomgr.notests noreplace-smp initos.load=mmio,blk",
	}
	rootDisk := []string{"-drive", "id=d0,file=/d/root.img,format=raw,if=none", "-device", "virtio-blk-device,drive=d0"}
	agent := []string{
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=agent,path=/run/x/agent.sock,server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=org.initos.agent",
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	const machine = "microvm,x-option-roms=off,rtc=on"

	tests := []struct {
		name   string
		mutate func(c *vmm.Config)
		accel  string
		want   []string
	}{
		{"tcg", func(c *vmm.Config) {}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common, rootDisk, agent)},
		{"kvm", func(c *vmm.Config) {}, vmm.AccelKVM,
			cat(head(machine, "kvm", "host"), common, rootDisk, agent)},
		{"readonly second disk", func(c *vmm.Config) {
			c.Disks = append(c.Disks, vmm.Disk{Path: "/d/data.img", ReadOnly: true})
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common, rootDisk,
				[]string{"-drive", "id=d1,file=/d/data.img,format=raw,if=none,readonly=on", "-device", "virtio-blk-device,drive=d1"},
				agent)},
		{"pod disk slot with a serial", func(c *vmm.Config) {
			c.Disks = append(c.Disks, vmm.Disk{Path: "/run/x/slot1.img", Serial: "initos-s1", Slot: true})
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common, rootDisk,
				[]string{"-drive", "id=d1,file=/run/x/slot1.img,format=raw,if=none", "-device", "virtio-blk-device,drive=d1,serial=initos-s1"},
				agent)},
		{"9p share", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.Share9p}}
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common, rootDisk, agent,
				[]string{"-fsdev", "local,id=fs0,path=/srv/vol,security_model=none,multidevs=remap", "-device", "virtio-9p-device,fsdev=fs0,mount_tag=z"})},
		{"modules share: read-only 9p after the others, named on the command line", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.Share9p}}
			c.Modules = "/k/lib/modules/6.1.0-57-amd64"
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common[:17],
				[]string{"-append", "console=ttyS0 panic=-1 tsc_early_khz=2095986 cryptomgr.notests noreplace-smp initos.modules=9p initos.load=mmio,blk"},
				rootDisk, agent,
				[]string{"-fsdev", "local,id=fs0,path=/srv/vol,security_model=none,multidevs=remap", "-device", "virtio-9p-device,fsdev=fs0,mount_tag=z",
					"-fsdev", "local,id=fs1,path=/k/lib/modules/6.1.0-57-amd64,security_model=none,multidevs=remap,readonly=on", "-device", "virtio-9p-device,fsdev=fs1,mount_tag=initos-modules"})},
		{"modules share with a virtiofs share: still 9p", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
			c.Modules = "/k/mods"
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-memfd,id=mem,size=512M,share=on"},
				common[:17],
				[]string{"-append", "console=ttyS0 panic=-1 tsc_early_khz=2095986 cryptomgr.notests noreplace-smp initos.modules=9p initos.load=mmio,blk"},
				rootDisk, agent,
				[]string{"-chardev", "socket,id=vfs0,path=/run/x/virtiofs0.sock", "-device", "vhost-user-fs-device,chardev=vfs0,tag=z",
					"-fsdev", "local,id=fs1,path=/k/mods,security_model=none,multidevs=remap,readonly=on", "-device", "virtio-9p-device,fsdev=fs1,mount_tag=initos-modules"})},
		{"virtiofs share", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-memfd,id=mem,size=512M,share=on"},
				common, rootDisk, agent,
				[]string{"-chardev", "socket,id=vfs0,path=/run/x/virtiofs0.sock", "-device", "vhost-user-fs-device,chardev=vfs0,tag=z"})},
		{"virtiofs share, RAM on huge pages", func(c *vmm.Config) {
			c.Shares = []vmm.Share{{Dir: "/srv/vol", Tag: "z", Mode: vmm.ShareVirtiofs}}
			c.RAMDir, c.RAMAlign = "/run/r,am", 2<<20
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-file,id=mem,size=512M,mem-path=/run/r,,am,share=on,align=2097152"},
				common, rootDisk, agent,
				[]string{"-chardev", "socket,id=vfs0,path=/run/x/virtiofs0.sock", "-device", "vhost-user-fs-device,chardev=vfs0,tag=z"})},
		{"RAMDir without virtiofs: anonymous memory (huge pages by madvise)", func(c *vmm.Config) {
			c.RAMDir, c.RAMAlign = "/run/ram", 2<<20
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common, rootDisk, agent)},
		{"root and volume shares, no disk", func(c *vmm.Config) {
			c.Disks = nil
			c.Shares = []vmm.Share{{Dir: "/run/x/root", Tag: "r", Mode: vmm.ShareVirtiofs, Cache: vmm.CacheAuto, Xattr: true},
				{Dir: "/srv/vol", Tag: "z", Mode: vmm.Share9p}}
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-memfd,id=mem,size=512M,share=on"},
				common, agent,
				[]string{"-chardev", "socket,id=vfs0,path=/run/x/virtiofs0.sock", "-device", "vhost-user-fs-device,chardev=vfs0,tag=r",
					"-fsdev", "local,id=fs1,path=/srv/vol,security_model=none,multidevs=remap", "-device", "virtio-9p-device,fsdev=fs1,mount_tag=z"})},
		{"template", func(c *vmm.Config) {
			c.Template = &vmm.Snapshot{RAM: "/dev/shm/t,1.ram", State: "/dev/shm/t.state"}
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t,,1.ram,share=on"},
				common, rootDisk, agent)},
		{"clone", func(c *vmm.Config) {
			c.RestoreFrom = &vmm.Snapshot{RAM: "/dev/shm/t.ram", State: "/dev/shm/t.state"}
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t.ram,share=off"},
				common, rootDisk, agent, []string{"-incoming", "defer"})},
		{"template with virtiofs shares: an empty root port for each", func(c *vmm.Config) {
			c.Disks = nil
			c.Shares = []vmm.Share{{Dir: "/b/share0", Tag: "r", Mode: vmm.ShareVirtiofs}, {Dir: "/b/share1", Tag: "z", Mode: vmm.Share9p},
				{Dir: "/b/share2", Tag: "v", Mode: vmm.ShareVirtiofs}}
			c.Template = &vmm.Snapshot{RAM: "/t/ram", State: "/t/state"}
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",pcie=on,memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-file,id=mem,size=512M,mem-path=/t/ram,share=on"},
				common[:17], []string{"-append", "console=ttyS0 panic=-1 tsc_early_khz=2095986 cryptomgr.notests noreplace-smp pcie_ports=native initos.load=mmio,blk"},
				agent,
				[]string{"-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1",
					"-fsdev", "local,id=fs1,path=/b/share1,security_model=none,multidevs=remap", "-device", "virtio-9p-device,fsdev=fs1,mount_tag=z",
					"-device", "pcie-root-port,id=rp2,bus=pcie.0,chassis=3"})},
		{"clone with a virtiofs share: its RAM a copy, shared", func(c *vmm.Config) {
			c.Disks = nil
			c.Shares = []vmm.Share{{Dir: "/run/x/root", Tag: "r", Mode: vmm.ShareVirtiofs}}
			c.RestoreFrom = &vmm.Snapshot{RAM: "/t/ram", State: "/t/state"}
		}, vmm.AccelTCG,
			cat([]string{"-M", machine + ",pcie=on,memory-backend=mem", "-accel", "tcg,thread=multi,tb-size=32", "-cpu", "max", "-smp", "2", "-m", "512",
				"-object", "memory-backend-file,id=mem,size=512M,mem-path=/dev/fd/4,share=on"},
				common[:17], []string{"-append", "console=ttyS0 panic=-1 tsc_early_khz=2095986 cryptomgr.notests noreplace-smp pcie_ports=native initos.load=mmio,blk"},
				agent,
				[]string{"-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1", "-incoming", "defer"})},
		{"two nics", func(c *vmm.Config) {
			c.NICs = []vmm.NIC{{Tap: "tap0", MAC: "02:00:00:00:00:01"}, {Tap: "tap1", MAC: "02:00:00:00:00:02"}}
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common, rootDisk, agent,
				[]string{"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "virtio-net-device,netdev=n0,mac=02:00:00:00:00:01",
					"-netdev", "tap,id=n1,ifname=tap1,script=no,downscript=no", "-device", "virtio-net-device,netdev=n1,mac=02:00:00:00:00:02"})},
		{"commas in paths are doubled", func(c *vmm.Config) {
			c.Disks[0].Path = "/d/a,b.img"
			c.ConsoleLog = "/run/x/con,sole.log"
		}, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"),
				[]string{"-global", "virtio-mmio.force-legacy=false", "-nodefaults", "-no-reboot", "-nographic",
					"-chardev", "file,id=console,path=/run/x/con,,sole.log"},
				common[7:],
				[]string{"-drive", "id=d0,file=/d/a,,b.img,format=raw,if=none", "-device", "virtio-blk-device,drive=d0"},
				agent)},
		{"no initrd, no cmdline", func(c *vmm.Config) { c.Initrd, c.Cmdline = "", "" }, vmm.AccelTCG,
			cat(head(machine, "tcg,thread=multi,tb-size=32", "max"), common[:15],
				[]string{"-append", "console=ttyS0 panic=-1 tsc_early_khz=2095986 cryptomgr.notests noreplace-smp"}, rootDisk, agent)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mutate(&c)
			got := buildArgs(&c, hostParams{accel: tt.accel, tscKHz: 2095986})
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("buildArgs:\n got %q\nwant %q", got, tt.want)
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
		{"plain", vmm.Config{}, "mmio,console"},
		{"plain with a disk", vmm.Config{Disks: []vmm.Disk{{}}}, "mmio,blk,btrfs,console"},
		{"9p", vmm.Config{Shares: []vmm.Share{{Mode: vmm.Share9p}}}, "mmio,console,9p"},
		{"virtiofs and net", vmm.Config{Shares: []vmm.Share{{Mode: vmm.ShareVirtiofs}}, NICs: []vmm.NIC{{}}}, "mmio,console,net,virtiofs"},
		{"both share kinds", vmm.Config{Shares: []vmm.Share{{Mode: vmm.ShareVirtiofs}, {Mode: vmm.Share9p}}}, "mmio,console,virtiofs,9p"},
		{"template with virtiofs", vmm.Config{Shares: []vmm.Share{{Mode: vmm.ShareVirtiofs}}, Template: &vmm.Snapshot{}}, "mmio,pci,console,virtiofs"},
		{"clone with virtiofs", vmm.Config{Shares: []vmm.Share{{Mode: vmm.ShareVirtiofs}}, RestoreFrom: &vmm.Snapshot{}}, "mmio,pci,console,virtiofs"},
		{"template with 9p", vmm.Config{Shares: []vmm.Share{{Mode: vmm.Share9p}}, Template: &vmm.Snapshot{}}, "mmio,console,9p"},
		// The guest loads 9p when its kernel first asks for a module.
		{"modules share", vmm.Config{Modules: "/k/mods"}, "mmio,console"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(ModuleGroups(&tt.cfg), ","); got != tt.want {
				t.Errorf("ModuleGroups = %s, want %s", got, tt.want)
			}
		})
	}
}
