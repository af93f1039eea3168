package vmm

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Share modes.
const (
	Share9p       = "9p"
	ShareVirtiofs = "virtiofs"
)

// Share caching (virtiofsd's cache policy; 9p shares take it in the
// guest's mount options).
const (
	// CacheNone: every access goes to the host, so each side sees the
	// other's changes at once; shared writable mmap fails (ENODEV).
	CacheNone = "none"
	// CacheAuto: close-to-open consistency (metadata cached about 1 s);
	// mmap works as on a local filesystem.
	CacheAuto = "auto"
)

// Limits checked by Validate.
const (
	MinMemoryMiB = 64
	MaxCPUs      = 255
	// MaxSocketName is the longest socket file name a driver puts in
	// StateDir; Validate keeps StateDir short enough for all of them.
	MaxSocketName = 16
	// maxUnixPath is sun_path's size minus its terminating NUL.
	maxUnixPath = 107
	// maxTagLen is virtio-fs's tag limit (36 bytes); 9p allows more, but
	// one limit for both keeps a share movable between modes.
	maxTagLen = 36
	// maxIfName is IFNAMSIZ minus the NUL.
	maxIfName = 15
	// MaxShares bounds a VM's shares (each a device and, for virtiofs, a
	// virtiofsd process; socket names hold one digit).
	MaxShares = 4
)

// VirtiofsSocket is the name, in StateDir, of the vhost-user socket of
// share i.
func VirtiofsSocket(i int) string { return fmt.Sprintf("virtiofs%d.sock", i) }

// VirtiofsdLog is the name, in StateDir, of the log of share i's virtiofsd.
func VirtiofsdLog(i int) string { return fmt.Sprintf("virtiofsd%d.log", i) }

// Config describes one VM. Drivers add their own devices and kernel
// arguments; everything here is what the runtime decides.
type Config struct {
	ID         string
	Kernel     string // ELF vmlinux (qemu also takes a bzImage, slower)
	Initrd     string
	Cmdline    string // the runtime's kernel arguments; drivers prepend their own
	Disks      []Disk // the first one is /dev/vda
	MemoryMiB  int
	CPUs       int
	StateDir   string // the driver puts its sockets and logs here
	ConsoleLog string // file the guest console goes to
	Shares     []Share
	// Modules is the guest kernel's modules directory (lib/modules/
	// <release>), shared read-only by tag ModulesTag so that the guest's
	// modprobe loads the modules its kernel asks for (docs/contracts.md).
	// It is no module group: the guest mounts it at the first request,
	// loading its transport's modules from the initrd then. "": none.
	Modules string
	NICs    []NIC
	// Netns is the network namespace the VMM runs in (the engine's, whose
	// interface its NICs' taps are redirected to); "" for the caller's.
	Netns string
	// RAMDir, when set, is a directory on a tmpfs with transparent huge
	// pages where a booted VM whose RAM must be shared (virtiofsd maps
	// it) gets it: a file the VMM makes there and unlinks at once, mapped
	// at a RAMAlign boundary so that the host backs it with huge pages.
	// "": a memfd (4 KiB pages on most hosts: a cold boot 200-300 ms
	// slower under TCG). qemu only: cloud-hypervisor's shared memory is its
	// own memfd.
	RAMDir   string
	RAMAlign int64
	// Template, when set, backs the guest's RAM with the file
	// Template.RAM, shared, so the VM can be saved as a snapshot its
	// clones restore (docs/templates.md). Its virtiofs shares are not
	// attached (a vhost-user device cannot be saved): each is a place its
	// clones attach theirs to after the restore.
	Template *Snapshot
	// RestoreFrom, when set, starts the VM from a saved snapshot instead
	// of booting it, with the snapshot's devices: its state loaded, then
	// the guest resumed. Its disks' images replace the template's (empty
	// placeholders): the guest learns their sizes after the restore. Without virtiofs shares the snapshot's RAM file
	// is mapped privately (each clone writes its own copies of the pages
	// it changes, the rest stays shared between clones). With them, the
	// clone's RAM is a copy of the file, as virtiofsd maps the guest's RAM
	// too and must see the clone's; the shares are attached after the
	// restore and the guest must wait for their tags. (That is qemu's
	// way; cloud-hypervisor's restore copies the RAM into each clone, and
	// a clone's disks, shares and NICs are all hot-added after it.)
	RestoreFrom *Snapshot
	// OOMScoreAdj, when set, is the host OOM killer's adjustment of the
	// VMM and its virtiofsd (SetOOMScoreAdj), written as each starts: the
	// guest's RAM is the container's memory on the host, so the host
	// weighs it as the spec's process.oomScoreAdj asks. nil: they keep
	// the caller's.
	OOMScoreAdj *int
}

// Snapshot is a saved VM: its guest RAM and its device and CPU state.
type Snapshot struct {
	RAM   string // the guest's RAM, a file (tmpfs keeps it in memory)
	State string // the VMM's saved state of the devices and CPUs; a driver keeps its other files beside it, named after it
}

// Disk is a raw disk image.
type Disk struct {
	Path     string
	ReadOnly bool
	// Serial is the disk's virtio serial (at most 20 bytes); the guest
	// finds attached disks by it.
	Serial string
	// Slot marks an empty image reserved for a disk attached after boot
	// (qemu's microvm has no hotplug: AttachDisk fills a slot and grows
	// it with block_resize).
	Slot bool
}

// MaxSerial is virtio-blk's serial length.
const MaxSerial = 20

// ModulesTag is the tag of Config.Modules's share.
const ModulesTag = "initos-modules"

// ModulesArg is the kernel argument that tells the guest how the modules
// share is attached: ModulesArg=<mode> (Share9p or ShareVirtiofs).
const ModulesArg = "initos.modules"

// WithModulesShare returns c with Modules, when set, as one more share of
// mode: read-only, cached (the tree does not change under a VM).
func (c Config) WithModulesShare(mode string) Config {
	if c.Modules != "" {
		c.Shares = append(slices.Clone(c.Shares), Share{Dir: c.Modules, Tag: ModulesTag, Mode: mode, Cache: CacheAuto, ReadOnly: true})
	}
	return c
}

// Share is a host directory the guest mounts by tag.
type Share struct {
	Dir  string
	Tag  string
	Mode string // Share9p or ShareVirtiofs
	// Cache is CacheNone ("": the default) or CacheAuto.
	Cache string
	// Xattr passes extended attributes through (file capabilities, ACLs,
	// user.*); virtiofsd keeps no CAP_SYS_ADMIN, so trusted.* stays out.
	Xattr bool
	// ReadOnly makes a 9p share read-only on the host's side (qemu's
	// readonly=on). qemu's C virtiofsd has no such option: the guest
	// mounts a read-only virtiofs share read-only.
	ReadOnly bool
}

// HasShares reports whether cfg has a share of mode m.
func (c *Config) HasShares(m string) bool {
	for _, s := range c.Shares {
		if s.Mode == m {
			return true
		}
	}
	return false
}

// NIC is a tap device on the host and the guest interface's MAC address.
type NIC struct {
	Tap string // "" only in a template: no backend (its clones give theirs)
	MAC string
}

// SocketPath is the path of a driver's socket in the state dir.
func (c *Config) SocketPath(name string) string { return filepath.Join(c.StateDir, name) }

// Validate reports every problem of the config at once, wrapped in
// ErrInvalidConfig. It checks that the files it names exist.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }

	if c.ID == "" {
		add("id is empty")
	}
	if c.Kernel == "" {
		add("kernel is empty")
	} else if err := regularFile(c.Kernel); err != nil {
		add("kernel: %v", err)
	}
	if c.Initrd != "" {
		if err := regularFile(c.Initrd); err != nil {
			add("initrd: %v", err)
		}
	}
	if strings.ContainsAny(c.Cmdline, "\n\x00") {
		add("cmdline contains a newline or NUL")
	}
	if c.MemoryMiB < MinMemoryMiB {
		add("memory %d MiB is below the minimum of %d MiB", c.MemoryMiB, MinMemoryMiB)
	}
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		add("cpus %d is outside 1..%d", c.CPUs, MaxCPUs)
	}
	switch {
	case c.StateDir == "":
		add("state dir is empty")
	case !filepath.IsAbs(c.StateDir):
		add("state dir %q is not an absolute path", c.StateDir)
	case len(c.StateDir)+1+MaxSocketName > maxUnixPath:
		add("state dir %q is too long for unix socket paths (at most %d bytes)", c.StateDir, maxUnixPath-1-MaxSocketName)
	}
	if c.ConsoleLog == "" {
		add("console log is empty")
	} else if !filepath.IsAbs(c.ConsoleLog) {
		add("console log %q is not an absolute path", c.ConsoleLog)
	}
	for i, d := range c.Disks {
		if d.Path == "" {
			add("disk %d: path is empty", i)
		} else if err := regularFile(d.Path); err != nil {
			add("disk %d: %v", i, err)
		}
		if len(d.Serial) > MaxSerial || strings.ContainsAny(d.Serial, ", =\t\n\x00") {
			add("disk %d: serial %q must be at most %d bytes without commas, '=' or whitespace", i, d.Serial, MaxSerial)
		}
	}
	if len(c.Shares) > MaxShares {
		add("%d shares: at most %d", len(c.Shares), MaxShares)
	}
	tags := map[string]bool{}
	for _, s := range c.Shares {
		if s.Mode != Share9p && s.Mode != ShareVirtiofs {
			add("share mode %q is neither %q nor %q", s.Mode, Share9p, ShareVirtiofs)
		}
		if s.Cache != "" && s.Cache != CacheNone && s.Cache != CacheAuto {
			add("share %q: cache %q is neither %q nor %q", s.Tag, s.Cache, CacheNone, CacheAuto)
		}
		if s.Tag == "" || len(s.Tag) > maxTagLen || strings.ContainsAny(s.Tag, ", =\t\n\x00") {
			add("share tag %q must be 1..%d bytes without commas, '=' or whitespace", s.Tag, maxTagLen)
		} else if tags[s.Tag] {
			add("share tag %q is used twice", s.Tag)
		}
		tags[s.Tag] = true
		if fi, err := os.Stat(s.Dir); err != nil {
			add("share dir: %v", err)
		} else if !fi.IsDir() {
			add("share dir %q is not a directory", s.Dir)
		}
	}
	if tags[ModulesTag] {
		add("share tag %q is the modules share's", ModulesTag)
	}
	if c.Modules != "" {
		if fi, err := os.Stat(c.Modules); err != nil {
			add("modules dir: %v", err)
		} else if !fi.IsDir() || !filepath.IsAbs(c.Modules) {
			add("modules dir %q is not an absolute path of a directory", c.Modules)
		}
	}
	taps := map[string]bool{}
	for i, n := range c.NICs {
		if n.Tap == "" && c.Template != nil {
			// A template's NIC has no backend: its clones give theirs.
		} else if n.Tap == "" || len(n.Tap) > maxIfName || strings.ContainsAny(n.Tap, ",=/ \t\n\x00") {
			add("nic %d: tap name %q must be 1..%d bytes without ',', '=', '/' or whitespace", i, n.Tap, maxIfName)
		} else if taps[n.Tap] {
			add("nic %d: tap %q is used twice", i, n.Tap)
		}
		taps[n.Tap] = true
		mac, err := net.ParseMAC(n.MAC)
		switch {
		case err != nil:
			add("nic %d: mac %q: %v", i, n.MAC, err)
		case len(mac) != 6:
			add("nic %d: mac %q is not a 48-bit address", i, n.MAC)
		case mac[0]&1 != 0:
			add("nic %d: mac %q is a multicast address", i, n.MAC)
		}
	}
	if c.RAMDir != "" && !filepath.IsAbs(c.RAMDir) {
		add("RAM directory %q is not an absolute path", c.RAMDir)
	}
	if c.RAMAlign < 0 || c.RAMAlign&(c.RAMAlign-1) != 0 || c.RAMAlign%4096 != 0 {
		add("RAM alignment %d is not a power of two of at least 4096", c.RAMAlign)
	}
	switch {
	case c.Template != nil && c.RestoreFrom != nil:
		add("a VM is either a template or a clone of one, not both")
	case c.Template != nil:
		if c.Template.RAM == "" || !filepath.IsAbs(c.Template.RAM) || c.Template.State == "" || !filepath.IsAbs(c.Template.State) {
			add("template: RAM %q and state %q must be absolute paths", c.Template.RAM, c.Template.State)
		}
	case c.RestoreFrom != nil:
		for _, f := range []string{c.RestoreFrom.RAM, c.RestoreFrom.State} {
			if err := regularFile(f); err != nil {
				add("snapshot: %v", err)
			}
		}
	}
	if len(p) > 0 {
		return fmt.Errorf("%w %q: %s", ErrInvalidConfig, c.ID, strings.Join(p, "; "))
	}
	return nil
}

func regularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	return nil
}

// GuestKernelArgs are kernel options every guest boots with, whatever its
// VMM: each skips work a microVM's kernel does for nothing, and each was
// measured alone, under TCG, kept only for what it saves (docs/boot-budget.md):
//   - cryptomgr.notests: no self-test of every crypto algorithm the kernel
//     registers at boot (crypto_algapi_init, 175 ms): about 300 ms.
//   - noreplace-smp: a one-CPU guest keeps the kernel's lock prefixes
//     instead of patching them out one by one (each patch flushes TCG's
//     translations): about 100 ms.
//
// Measured and left out: quiet and loglevel (within noise; a stalled boot
// must show where), mitigations=off, nopti, nokaslr, audit=0,
// tsc=reliable, rcupdate.rcu_expedited=1, page_alloc.shuffle=0 (within
// noise), and init_on_alloc=0 (about 50 ms, but it is hardening the
// container's processes keep).
const GuestKernelArgs = "cryptomgr.notests noreplace-smp"
