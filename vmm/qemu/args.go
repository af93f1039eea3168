package qemu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// Files the driver creates in the state dir.
const (
	agentSocket = "agent.sock"
	qmpSocket   = "qmp.sock"
	qemuLog     = "qemu.log"
)

// AgentPortName is the virtio-serial port the guest agent serves on
// (docs/contracts.md).
const AgentPortName = "org.initos.agent"

// agentMaxPorts is the virtio-serial device's port count: port 0, which
// qemu keeps for a console, and the agent's, port 1.
const agentMaxPorts = 2

// hostParams are the host-dependent inputs of the command line.
type hostParams struct {
	accel  string // vmm.AccelKVM or vmm.AccelTCG
	tscKHz int
}

// KernelCmdline is the full guest command line: the driver's arguments,
// then the runtime's.
func KernelCmdline(cfg *vmm.Config, tscKHz int) string {
	// panic=-1 reboots at once on a panic, and -no-reboot turns that
	// reboot into qemu's exit. tsc_early_khz: design §8. No "quiet": the
	// kernel's messages cost nothing measurable (2.19 s to the agent with
	// and without, TCG) and a boot that stalls shows where.
	s := "console=ttyS0 panic=-1 tsc_early_khz=" + strconv.Itoa(tscKHz) + " " + vmm.GuestKernelArgs
	if hotplugShares(cfg) {
		// microvm's ACPI tables grant the guest no control of the PCIe
		// ports: without this option pciehp leaves them alone and a
		// hot-added device never appears (docs/templates.md).
		s += " pcie_ports=native"
	}
	if cfg.Modules != "" {
		s += " " + vmm.ModulesArg + "=" + vmm.Share9p
	}
	if cfg.Cmdline != "" {
		s += " " + cfg.Cmdline
	}
	return s
}

// tcgCacheMiB bounds TCG's translation cache, which is otherwise up to
// 1 GiB of the host's memory per VM as its guest runs more code. Measured
// on a cold boot of the agent: the default cache held 70 MB, 32 MiB holds
// 50 MB at the same boot time; 16 MiB saves 17 MB more but slows a boot by
// 5% and a small workload by 70% (flushes).
const tcgCacheMiB = 32

// A clone's descriptors (Supervisor.ExtraFiles, in this order): its
// template's state, which qemu loads with "migrate-incoming fd:3" (no
// shell and cat forked off qemu, as an exec: URI would), and a virtiofs
// clone's copy of its template's RAM.
const (
	cloneStateFd = 3
	cloneRAMFd   = 4
)

// hotplugShares reports whether cfg's virtiofs shares are hot-added after
// a restore instead of being on the command line: qemu 7.2 cannot migrate
// vhost-user-fs, so a template has an empty PCIe root port for each, and
// its clones add the device there once restored (docs/templates.md).
func hotplugShares(cfg *vmm.Config) bool {
	return (cfg.Template != nil || cfg.RestoreFrom != nil) && cfg.HasShares(vmm.ShareVirtiofs)
}

// rootPort is the id of the PCIe root port share i is hot-added to.
func rootPort(i int) string { return fmt.Sprintf("rp%d", i) }

// optValue escapes a value inside a qemu -opt key=value,... list, where a
// doubled comma stands for one comma.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// buildArgs is qemu's command line for cfg (microvm, design §8). Devices
// come in a fixed order: disks first, so the first disk is /dev/vda.
func buildArgs(cfg *vmm.Config, h hostParams) []string {
	machine := "microvm,x-option-roms=off,rtc=on"
	virtiofs := cfg.HasShares(vmm.ShareVirtiofs)
	hotplug := hotplugShares(cfg)
	if hotplug {
		// microvm's only bus that takes devices after boot.
		machine += ",pcie=on"
	}
	if virtiofs || cfg.Template != nil || cfg.RestoreFrom != nil {
		// vhost-user-fs needs guest memory virtiofsd can map; a
		// template's and a clone's RAM is the snapshot's file.
		machine += ",memory-backend=mem"
	}
	a := []string{"-M", machine}
	if h.accel == vmm.AccelKVM {
		a = append(a, "-accel", "kvm", "-cpu", "host")
	} else {
		a = append(a, "-accel", "tcg,thread=multi,tb-size="+strconv.Itoa(tcgCacheMiB), "-cpu", "max")
	}
	a = append(a,
		"-smp", strconv.Itoa(cfg.CPUs),
		"-m", strconv.Itoa(cfg.MemoryMiB),
	)
	switch {
	case cfg.Template != nil:
		// Shared: what the guest writes reaches the file Save leaves
		// for the clones.
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=on", cfg.MemoryMiB, optValue(cfg.Template.RAM)))
	case cfg.RestoreFrom != nil && virtiofs:
		// virtiofsd maps the guest's RAM too, so it must be shared, and
		// the clone's own: a copy of the template's (a memfd, Start).
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=/dev/fd/%d,share=on", cfg.MemoryMiB, cloneRAMFd))
	case cfg.RestoreFrom != nil:
		// Private: copy-on-write over the template's pages.
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=off", cfg.MemoryMiB, optValue(cfg.RestoreFrom.RAM)))
	case virtiofs && cfg.RAMDir != "":
		// A directory: qemu makes its file there and unlinks it at once.
		// align: a huge-page boundary, without which the host maps the
		// file with small pages whatever its tmpfs offers.
		ram := fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=on", cfg.MemoryMiB, optValue(cfg.RAMDir))
		if cfg.RAMAlign > 0 {
			ram += ",align=" + strconv.FormatInt(cfg.RAMAlign, 10)
		}
		a = append(a, "-object", ram)
	case virtiofs:
		a = append(a, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", cfg.MemoryMiB))
	}
	a = append(a,
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-reboot", "-nographic",
		"-chardev", "file,id=console,path="+optValue(cfg.ConsoleLog),
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,path="+optValue(cfg.SocketPath(qmpSocket))+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-kernel", cfg.Kernel,
	)
	if cfg.Initrd != "" {
		a = append(a, "-initrd", cfg.Initrd)
	}
	a = append(a, "-append", KernelCmdline(cfg, h.tscKHz))

	for i, d := range cfg.Disks {
		drive := fmt.Sprintf("id=d%d,file=%s,format=raw,if=none", i, optValue(d.Path))
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		dev := fmt.Sprintf("virtio-blk-device,drive=d%d", i)
		if d.Serial != "" {
			dev += ",serial=" + optValue(d.Serial)
		}
		a = append(a, "-drive", drive, "-device", dev)
	}
	// max_ports: the guest's virtio_console sets up a receive and a
	// transmit queue per port the device may have (31 by default: 64
	// queues) when it probes it; the agent's port is the only one (port 0
	// is reserved for a console). The probe went from 47-70 to 34-44 ms of
	// a cold boot under TCG (4 boots each).
	a = append(a,
		"-device", "virtio-serial-device,max_ports="+strconv.Itoa(agentMaxPorts),
		"-chardev", "socket,id=agent,path="+optValue(cfg.SocketPath(agentSocket))+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+AgentPortName,
	)
	// The modules share is 9p: it needs no virtiofsd, and a template
	// whose guest never mounted it saves (qemu blocks the migration of a
	// mounted 9p share only).
	for i, s := range cfg.WithModulesShare(vmm.Share9p).Shares {
		switch {
		case s.Mode == vmm.ShareVirtiofs && hotplug:
			a = append(a, "-device", fmt.Sprintf("pcie-root-port,id=%s,bus=pcie.0,chassis=%d", rootPort(i), i+1))
		case s.Mode == vmm.ShareVirtiofs:
			a = append(a,
				"-chardev", fmt.Sprintf("socket,id=vfs%d,path=%s", i, optValue(cfg.SocketPath(vmm.VirtiofsSocket(i)))),
				"-device", fmt.Sprintf("vhost-user-fs-device,chardev=vfs%d,tag=%s", i, s.Tag),
			)
		default:
			fsdev := fmt.Sprintf("local,id=fs%d,path=%s,security_model=none,multidevs=remap", i, optValue(s.Dir))
			if s.ReadOnly {
				fsdev += ",readonly=on"
			}
			a = append(a,
				"-fsdev", fsdev,
				"-device", fmt.Sprintf("virtio-9p-device,fsdev=fs%d,mount_tag=%s", i, s.Tag),
			)
		}
	}
	for i, n := range cfg.NICs {
		netdev := fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, n.Tap)
		if n.Tap == "" {
			// A template's NIC: a hub port of its own carries nothing.
			netdev = fmt.Sprintf("hubport,id=n%d,hubid=%d", i, i)
		}
		a = append(a,
			"-netdev", netdev,
			"-device", fmt.Sprintf("virtio-net-device,netdev=n%d,mac=%s", i, n.MAC),
		)
	}
	if cfg.RestoreFrom != nil {
		// The state is loaded once qemu is up (restore), from
		// cloneStateFd.
		a = append(a, "-incoming", "defer")
	}
	return a
}

// ModuleGroups are the initrd module groups (docs/contracts.md) a guest
// of this driver needs for cfg, in initrd order.
func ModuleGroups(cfg *vmm.Config) []string {
	g := []string{"mmio"}
	if hotplugShares(cfg) {
		g = append(g, "pci") // the hot-added shares' transport
	}
	if len(cfg.Disks) > 0 {
		g = append(g, "blk", "btrfs")
	}
	g = append(g, "console")
	if len(cfg.NICs) > 0 {
		g = append(g, "net")
	}
	if cfg.HasShares(vmm.ShareVirtiofs) {
		g = append(g, "virtiofs")
	}
	if cfg.HasShares(vmm.Share9p) {
		g = append(g, "9p")
	}
	return g
}
