package cloudhypervisor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// Files the driver creates in the state dir.
const (
	apiSocket   = "api.sock"
	vsockSocket = "vsock.sock"
	chLog       = "cloud-hypervisor.log"
)

// GuestCID is the guest's vsock context id; AgentPort the agent's vsock
// port (docs/contracts.md).
const (
	GuestCID  = 3
	AgentPort = 1024
)

// KernelCmdline is the full guest command line: the driver's arguments,
// then the runtime's. The serial port is the legacy 8250 (ttyS0). No
// "quiet": a boot that stalls shows where on the console.
func KernelCmdline(cfg *vmm.Config) string {
	s := "console=ttyS0 panic=-1 " + vmm.GuestKernelArgs
	if cfg.Modules != "" {
		s += " " + vmm.ModulesArg + "=" + vmm.ShareVirtiofs
	}
	if cfg.Cmdline != "" {
		s += " " + cfg.Cmdline
	}
	return s
}

// checkConfig rejects what cloud-hypervisor cannot express: it has no 9p
// device, and its option parser splits values on commas.
func checkConfig(cfg *vmm.Config) error {
	var p []string
	for _, s := range cfg.Shares {
		if s.Mode != vmm.ShareVirtiofs {
			p = append(p, fmt.Sprintf("share %q: mode %q: cloud-hypervisor shares only by %s", s.Tag, s.Mode, vmm.ShareVirtiofs))
		}
	}
	paths := []string{cfg.StateDir, cfg.ConsoleLog}
	for _, d := range cfg.Disks {
		paths = append(paths, d.Path)
	}
	for _, path := range paths {
		if strings.ContainsAny(path, ",\"") {
			p = append(p, fmt.Sprintf("path %q: cloud-hypervisor options cannot hold ',' or '\"'", path))
		}
	}
	if len(p) > 0 {
		return fmt.Errorf("%w %q: %s", vmm.ErrInvalidConfig, cfg.ID, strings.Join(p, "; "))
	}
	return nil
}

// deviceConfig is cfg with its modules share as one more virtiofs share
// (cloud-hypervisor has no 9p): the shares the VM's --fs and virtiofsd
// serve.
func deviceConfig(cfg vmm.Config) vmm.Config { return cfg.WithModulesShare(vmm.ShareVirtiofs) }

// buildArgs is cloud-hypervisor's command line for cfg. Options taking
// several devices (--disk, --net, --fs) get them as values of one flag;
// the first disk is /dev/vda.
func buildArgs(cfg *vmm.Config) []string {
	shares := deviceConfig(*cfg).Shares
	virtiofs := len(shares) > 0
	a := []string{
		"--api-socket", "path=" + cfg.SocketPath(apiSocket),
		"--kernel", cfg.Kernel,
	}
	if cfg.Initrd != "" {
		a = append(a, "--initramfs", cfg.Initrd)
	}
	mem := "size=" + strconv.Itoa(cfg.MemoryMiB) + "M"
	if virtiofs {
		// vhost-user devices need guest memory the backend can map.
		mem += ",shared=on"
	}
	a = append(a,
		"--cmdline", KernelCmdline(cfg),
		"--cpus", "boot="+strconv.Itoa(cfg.CPUs),
		"--memory", mem,
		"--serial", "file="+cfg.ConsoleLog,
		"--console", "off",
	)
	if len(cfg.Disks) > 0 {
		a = append(a, "--disk")
		for _, d := range cfg.Disks {
			s := "path=" + d.Path
			if d.ReadOnly {
				s += ",readonly=on"
			}
			if d.Serial != "" {
				s += ",serial=" + d.Serial
			}
			a = append(a, s)
		}
	}
	a = append(a, "--vsock", fmt.Sprintf("cid=%d,socket=%s", GuestCID, cfg.SocketPath(vsockSocket)))
	if virtiofs {
		a = append(a, "--fs")
		for i, s := range shares {
			a = append(a, "tag="+s.Tag+",socket="+cfg.SocketPath(vmm.VirtiofsSocket(i)))
		}
	}
	if len(cfg.NICs) > 0 {
		a = append(a, "--net")
		for _, n := range cfg.NICs {
			a = append(a, "tap="+n.Tap+",mac="+n.MAC)
		}
	}
	return a
}

// ModuleGroups are the initrd module groups (docs/contracts.md) a guest
// of this driver needs for cfg, in initrd order.
func ModuleGroups(cfg *vmm.Config) []string {
	g := []string{"pci"}
	if len(cfg.Disks) > 0 {
		g = append(g, "blk", "btrfs")
	}
	g = append(g, "console")
	if len(cfg.NICs) > 0 {
		g = append(g, "net")
	}
	if len(cfg.Shares) > 0 {
		g = append(g, "virtiofs")
	}
	return append(g, "vsock")
}
