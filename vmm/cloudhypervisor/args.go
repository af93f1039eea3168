package cloudhypervisor

import (
	"fmt"
	"os"
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
	if deviceConfig(*cfg).Modules != "" {
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
	if cfg.RestoreFrom != nil {
		if fi, err := os.Stat(snapshotConfig(cfg.RestoreFrom)); err != nil || !fi.Mode().IsRegular() {
			p = append(p, fmt.Sprintf("snapshot: no configuration %q", snapshotConfig(cfg.RestoreFrom)))
		}
	}
	if len(p) > 0 {
		return fmt.Errorf("%w %q: %s", vmm.ErrInvalidConfig, cfg.ID, strings.Join(p, "; "))
	}
	return nil
}

// deviceConfig is cfg with its modules share as one more virtiofs share
// (cloud-hypervisor has no 9p): the shares the VM's --fs and virtiofsd
// serve. A template and its clones have none: a clone hot-adds only the
// container's own shares (not built for the modules share yet).
func deviceConfig(cfg vmm.Config) vmm.Config {
	if cfg.Template != nil || cfg.RestoreFrom != nil {
		cfg.Modules = ""
		return cfg
	}
	return cfg.WithModulesShare(vmm.ShareVirtiofs)
}

// buildArgs is cloud-hypervisor's command line for cfg. Options taking
// several devices (--disk, --net, --fs) get them as values of one flag;
// the first disk is /dev/vda. A template has none of the container's
// devices (its clones hot-add theirs after the restore), and a clone is
// restored from its snapshot (restoreArgs).
func buildArgs(cfg *vmm.Config) []string {
	if cfg.RestoreFrom != nil {
		return restoreArgs(cfg)
	}
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
	if cfg.Template != nil {
		// Its memory stays shared=on with shares: cloud-hypervisor
		// validates a hot-added fs against the restored configuration.
		return append(a, "--vsock", fmt.Sprintf("cid=%d,socket=%s", GuestCID, cfg.SocketPath(vsockSocket)))
	}
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

// restoreDir is the directory, in the state dir, that a clone is restored
// from: its own config.json beside links to its template's state and RAM.
const restoreDir = "restore"

// Names of a snapshot's files in the directory given to vm.snapshot
// (docs/snapshot_restore.md: "config.json", "memory-ranges",
// "state.json").
const (
	snapConfig = "config.json"
	snapMemory = "memory-ranges"
	snapState  = "state.json"
)

// snapshotConfig is the path of a snapshot's config.json: beside its
// State, which Save writes last.
func snapshotConfig(s *vmm.Snapshot) string { return s.State + ".config" }

// restoreArgs is a clone's command line: the API socket and the restore.
// "--restore is mutually exclusive with all VM config flags": the VM's
// devices, serial file and vsock socket are those of the config.json that
// writeRestoreDir rewrote for the clone.
//
// Written to cloud-hypervisor v48.0's --restore, whose syntax is
// "source_url=<source_url>,prefault=on|off,net_fds=<...>" with "`prefault`
// brings memory pages in when enabled (disabled by default)": only
// source_url is given. net_fds (v40.0) serves VMs created with net fds,
// which ours are not; memory_restore_mode=ondemand (userfaultfd) and
// resume=true arrived in v52.0 and are not used, so every restore copies
// memory-ranges into the clone's own guest memory, and vm.resume follows.
func restoreArgs(cfg *vmm.Config) []string {
	return []string{
		"--api-socket", "path=" + cfg.SocketPath(apiSocket),
		"--restore", "source_url=" + fileURL(cfg.SocketPath(restoreDir)),
	}
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
