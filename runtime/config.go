package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// Defaults of Config. The data directory holds the guest kernel (kernel/,
// the extracted Debian package), caches (vmlinux, initrds) and disk images.
const (
	DefaultRoot         = "/run/initos-runtime"
	DefaultDataDir      = "/var/lib/initos-runtime"
	DefaultConfigFile   = "/etc/initos-runtime/config.json"
	DefaultMemoryMiB    = 512
	MinMemoryMiB        = 128
	DefaultCPUs         = 1
	DefaultFreeSpace    = 256 << 20
	DefaultBootTimeout  = 120 * time.Second
	DefaultBridge       = "initos0"
	DefaultBridgeSubnet = "10.213.0.0/24"
	DefaultPodSlots     = 6
)

// Config is what the runtime needs beyond the bundle. Zero fields take the
// defaults above; a JSON file (DefaultConfigFile or --config) and the CLI's
// global flags fill it.
type Config struct {
	// Root is the state directory (runc's --root).
	Root string `json:"root,omitempty"`
	// DataDir holds kernel/, cache/ and disks/.
	DataDir string `json:"dataDir,omitempty"`
	// KernelRoot is a directory where a Debian linux-image package was
	// extracted (default DataDir/kernel).
	KernelRoot string `json:"kernelRoot,omitempty"`
	// AgentPath is the static guest agent binary (default: initos-agent next
	// to the runtime's executable, then the libexec directories). The
	// process helper, initos-exec, is taken from the same directory.
	AgentPath string `json:"agentPath,omitempty"`
	// VMM is "qemu", "cloud-hypervisor" or "auto" (cloud-hypervisor when
	// installed and KVM is usable, else qemu).
	VMM string `json:"vmm,omitempty"`
	// QemuBinary and CloudHypervisorBinary override the VMM executables.
	QemuBinary            string `json:"qemuBinary,omitempty"`
	CloudHypervisorBinary string `json:"cloudHypervisorBinary,omitempty"`
	// MemoryMiB and CPUs size a VM whose spec sets no limits.
	MemoryMiB int `json:"memoryMiB,omitempty"`
	CPUs      int `json:"cpus,omitempty"`
	// FreeSpace is the free space in bytes added to each disk image.
	FreeSpace int64 `json:"freeSpace,omitempty"`
	// BootTimeout bounds VMM start to agent ready.
	BootTimeout Duration `json:"bootTimeout,omitempty"`
	// Debug makes the guest agent log each step to the console log.
	Debug bool `json:"debug,omitempty"`
	// Templates starts each container by restoring a saved VM of its
	// shape instead of booting one (docs/templates.md); the first start
	// of a shape boots and saves its template. Under qemu with 9p shares
	// idle clones share the template's memory; with virtiofs, and under
	// cloud-hypervisor, each clone's is a copy.
	Templates bool `json:"templates,omitempty"`
	// BootConcurrency is how many VMs may boot (and set up) at once on
	// this host, the others waiting their turn (bootslots.go): 0 picks
	// the host's CPU count under TCG and no limit with KVM; -1 is no
	// limit.
	BootConcurrency int `json:"bootConcurrency,omitempty"`
	// Bridge and BridgeSubnet are the seed's per-host bridge and its /24
	// (`initos-runtime network setup` creates them). A container whose
	// spec asks for a new network namespace joins the bridge when it
	// exists.
	Bridge       string `json:"bridge,omitempty"`
	BridgeSubnet string `json:"bridgeSubnet,omitempty"`
	// PodSlots is how many containers a pod's VM can hold besides its
	// sandbox: qemu's microvm has no disk hotplug, so it boots with that
	// many empty disk slots.
	PodSlots int `json:"podSlots,omitempty"`
	// ShareFS is the shared directory's filesystem: "auto" (virtiofs
	// where virtiofsd is installed, else 9p), "virtiofs" or "9p".
	ShareFS string `json:"shareFS,omitempty"`
	// VirtiofsdBinary overrides the virtiofsd executable.
	VirtiofsdBinary string `json:"virtiofsdBinary,omitempty"`
	// Rootfs is how the bundle's rootfs reaches the guest: "share" (the
	// default: the rootfs itself over the shared filesystem of ShareFS, so
	// the container's writes land in the engine's storage, as under runc)
	// or "disk" (a per-container btrfs copy: image reads at block-device
	// speed, but writes stay in the VM and are lost at delete).
	Rootfs string `json:"rootfs,omitempty"`
	// RAMDir is where a booted qemu VM whose RAM virtiofsd must map gets
	// it: a tmpfs with transparent huge pages that the runtime mounts there
	// in the mount namespace the VMM starts in (default DefaultRAMDir:
	// a monitor's own ends with it). NoHugePages keeps
	// that RAM in a memfd instead, on the host's small pages (a cold boot
	// 200-300 ms slower under TCG).
	RAMDir      string `json:"ramDir,omitempty"`
	NoHugePages bool   `json:"noHugePages,omitempty"`
}

// Rootfs modes.
const (
	RootfsShare = "share"
	RootfsDisk  = "disk"
)

// Duration is a time.Duration that reads "90s" style strings from JSON.
type Duration time.Duration

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parsing duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// LoadConfigFile reads a JSON config file. A missing file is not an error
// when optional is true.
func LoadConfigFile(path string, optional bool) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("reading config %q: %w", path, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parsing config %q: %w", path, err)
	}
	return c, nil
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.KernelRoot == "" {
		c.KernelRoot = filepath.Join(c.DataDir, "kernel")
	}
	if c.VMM == "" {
		c.VMM = "auto"
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.FreeSpace == 0 {
		c.FreeSpace = DefaultFreeSpace
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.BridgeSubnet == "" {
		c.BridgeSubnet = DefaultBridgeSubnet
	}
	if c.ShareFS == "" {
		c.ShareFS = "auto"
	}
	if c.Rootfs == "" {
		c.Rootfs = RootfsShare
	}
	if c.PodSlots == 0 {
		c.PodSlots = DefaultPodSlots
	}
	if c.RAMDir == "" {
		c.RAMDir = DefaultRAMDir
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = Duration(DefaultBootTimeout)
	}
	return c
}

// Validate reports the first field that cannot work.
func (c Config) Validate() error {
	switch c.VMM {
	case "auto", "qemu", "cloud-hypervisor":
	default:
		return fmt.Errorf("config: vmm %q: must be auto, qemu or cloud-hypervisor", c.VMM)
	}
	if c.MemoryMiB < MinMemoryMiB {
		return fmt.Errorf("config: memoryMiB %d is below the minimum of %d", c.MemoryMiB, MinMemoryMiB)
	}
	if c.CPUs < 1 {
		return fmt.Errorf("config: cpus %d must be at least 1", c.CPUs)
	}
	if c.BootConcurrency < -1 {
		return fmt.Errorf("config: bootConcurrency %d: want a count, 0 (the host's CPUs under TCG, else no limit) or -1 (no limit)", c.BootConcurrency)
	}
	switch c.ShareFS {
	case "auto", "virtiofs", "9p":
	default:
		return fmt.Errorf("config: shareFS %q: must be auto, virtiofs or 9p", c.ShareFS)
	}
	switch c.Rootfs {
	case RootfsShare, RootfsDisk:
	default:
		return fmt.Errorf("config: rootfs %q: must be %s or %s", c.Rootfs, RootfsShare, RootfsDisk)
	}
	if c.PodSlots < 1 || c.PodSlots > 16 {
		return fmt.Errorf("config: podSlots %d must be between 1 and 16", c.PodSlots)
	}
	if c.FreeSpace < 0 {
		return fmt.Errorf("config: freeSpace %d must not be negative", c.FreeSpace)
	}
	for name, p := range map[string]string{"root": c.Root, "dataDir": c.DataDir, "kernelRoot": c.KernelRoot, "ramDir": c.RAMDir} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("config: %s %q must be an absolute path", name, p)
		}
	}
	return nil
}

// CacheDir holds the extracted vmlinux files and the initrds
// (initrd.Vmlinux, initrd.Build).
func (c Config) CacheDir() string { return filepath.Join(c.DataDir, "cache") }

// bootSlotsDir holds the boot slots' lock files.
func (c Config) bootSlotsDir() string { return filepath.Join(c.DataDir, "boot-slots") }

// templatesDir holds the VM templates, one directory each.
func (c Config) templatesDir() string { return filepath.Join(c.DataDir, "templates") }

// leasesDir holds the bridge IPAM's leases.
func (c Config) leasesDir() string { return filepath.Join(c.DataDir, "leases") }

// HostsFile is the bridge's name → address file; its directory is what
// dnsmasq's --hostsdir watches.
func (c Config) HostsFile() string { return filepath.Join(c.DataDir, "dns", "hosts") }

// diskCache keeps the images of rootfs trees with a cache key (image
// layers under containerd's snapshots).
func (c Config) diskCache() bundle.DiskCache {
	return bundle.DiskCache{Dir: filepath.Join(c.CacheDir(), "images")}
}

// disksDir holds the containers' disk images.
func (c Config) disksDir() string { return filepath.Join(c.DataDir, "disks") }
