package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Host bind mounts reach the guest through one shared directory per VM
// (design section 6, the seed's /z): <state>/share holds one entry per
// bind mount, a bind mount of its source and nothing else, so a file bind
// does not reveal its siblings. The guest mounts the share at shareMount
// and binds each entry into place.
const (
	shareDirName = "share"
	shareTag     = "initos-share"
	shareMount   = "/z"
)

// mountFunc and unmountFunc are mount(2) and umount2(2), mountSetattrFunc
// mount_setattr(2), submountsFunc lists the mount points below a path and
// attachServedFunc mounts an entry in virtiofsd's namespace; tests replace
// them.
var (
	mountFunc        = unix.Mount
	unmountFunc      = unix.Unmount
	statfsFunc       = unix.Statfs
	mountSetattrFunc = unix.MountSetattr
	submountsFunc    = hostSubmounts
	attachServedFunc = attachServed
)

// share is the prepared shared directory of one VM.
type share struct {
	dir     string
	entries []string // bind-mounted entries, to unmount
	// fs is vmm.ShareVirtiofs or vmm.Share9p.
	fs string
	// served is the directory a running virtiofsd serves, which holds
	// dir (a pod's share, for a member's entries; "": none). Entries are
	// then mounted in virtiofsd's mount namespace only (see add).
	served string
}

// guestMounts turns the spec's mounts into the agent's: host bind mounts
// get an entry in the shared directory (made under stateDir) and a source
// under shareMount; a bind of /dev/shm becomes a guest tmpfs of the same
// size (a host tmpfs cannot be shared with a VM's memory). On error
// nothing stays mounted.
//
// The shared directory is a shared mount of its own, so that virtiofsd
// sees what is bound under it after boot: the mounts of pod members
// (member.go, AddContainer). always makes it even without bind mounts (a
// CRI pod's sandbox, whose members bring theirs).
func guestMounts(s *specs.Spec, stateDir string, always bool) (_ []*agentapi.Mount, _ *share, err error) {
	var sh *share
	defer func() {
		if err != nil && sh != nil {
			sh.remove()
		}
	}()
	if err := checkBinds(s); err != nil {
		return nil, nil, err
	}
	if always || hasHostBinds(s) {
		dir := filepath.Join(stateDir, shareDirName)
		if err := makeSharedDir(dir); err != nil {
			return nil, nil, err
		}
		sh = &share{dir: dir}
	}
	out, err := shareMounts(s, &sh, filepath.Join(stateDir, shareDirName), shareMount, "", nil)
	return out, sh, err
}

// shareMounts converts the mounts of s, which checkBinds has passed; host
// binds get an entry in the share *shp (made at dir when nil, inside
// served: see share.served), seen by the guest under guestDir, from the
// trees of their sources where trees holds them (a member's, member.go).
func shareMounts(s *specs.Spec, shp **share, dir, guestDir, served string, trees mountTrees) ([]*agentapi.Mount, error) {
	var out []*agentapi.Mount
	for _, m := range guestCgroupMounts(s.Mounts) {
		if !isBind(m) {
			out = append(out, &agentapi.Mount{Destination: m.Destination, Type: m.Type, Source: m.Source, Options: m.Options})
			continue
		}
		if !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("bind mount on %q: source %q is not an absolute path", m.Destination, m.Source)
		}
		if !sharedBind(m) {
			out = append(out, shmMount(m))
			continue
		}
		if *shp == nil {
			*shp = &share{dir: dir, served: served}
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, fmt.Errorf("creating shared directory %q: %w", dir, err)
			}
		}
		entry, subs, err := (*shp).add(m, trees)
		if err != nil {
			return nil, err
		}
		out = append(out, &agentapi.Mount{Destination: m.Destination, Type: "bind", Source: filepath.Join(guestDir, entry), Options: m.Options, Submounts: subs})
	}
	return out, nil
}

// checkBinds refuses, before anything is mounted, the binds of s that the
// guest cannot have (checkPropagation).
func checkBinds(s *specs.Spec) error {
	for _, m := range guestCgroupMounts(s.Mounts) {
		if isBind(m) {
			if err := checkPropagation(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPropagation refuses a bind of a host path whose propagation is
// shared ("shared", "rshared": Kubernetes' mountPropagation Bidirectional,
// the CRI's PROPAGATION_BIDIRECTIONAL): mounts the container makes there
// would have to appear on the host, and the container's mounts are the
// guest kernel's, which the host's cannot be a peer of. (The other way,
// the host's mounts made later below the source, reaches the guest through
// the share, as "rslave" wants.)
func checkPropagation(m specs.Mount) error {
	for _, o := range m.Options {
		if o == "shared" || o == "rshared" {
			return fmt.Errorf("bind mount of host path %q on %q: mount propagation %q (Kubernetes mountPropagation: Bidirectional) %w: "+
				"the container runs in a VM, and the mounts it makes cannot reach the host's; "+
				"use HostToContainer (rslave) or None (rprivate), or run the pod with runc",
				m.Source, m.Destination, o, ErrUnsupported)
		}
	}
	return nil
}

// hasHostBinds reports whether s binds a host path that the guest gets
// through the shared directory.
func hasHostBinds(s *specs.Spec) bool {
	for _, m := range guestCgroupMounts(s.Mounts) {
		if sharedBind(m) {
			return true
		}
	}
	return false
}

// sharedBind reports whether m is a bind that the guest gets through the
// shared directory: every bind but one on /dev/shm, which becomes a guest
// tmpfs (shmMount).
func sharedBind(m specs.Mount) bool {
	return isBind(m) && filepath.Clean(m.Destination) != "/dev/shm"
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")
}

// sharedShmSource prefixes the key of a guest tmpfs that the VM's
// containers share (the agent's sharedShmPrefix).
const sharedShmSource = "initos-shm:"

// shmMount is a guest tmpfs for a bind of a host /dev/shm, sized like it.
func shmMount(m specs.Mount) *agentapi.Mount {
	opts := []string{"nosuid", "nodev", "noexec", "mode=1777"}
	var st unix.Statfs_t
	if err := statfsFunc(m.Source, &st); err == nil && st.Blocks > 0 {
		opts = append(opts, "size="+strconv.FormatUint(st.Blocks*uint64(st.Bsize), 10))
	}
	// Keyed by the host's path: the containers of a VM that bind the same
	// /dev/shm (a pod's) share one tmpfs in the guest, as they share it
	// under runc.
	key := sha256.Sum256([]byte(filepath.Clean(m.Source)))
	return &agentapi.Mount{Destination: m.Destination, Type: "tmpfs", Source: sharedShmSource + hex.EncodeToString(key[:8]), Options: opts}
}

// add binds m's source into the share and returns the entry's name,
// <n>/<the source's base name>: the guest's bind of it then has the
// source's name as its root in mountinfo, as a bind under runc has (tools
// such as runtime-tools' runtimetest match a bind by that name). For a
// recursive bind it also returns the mount points below the source
// (relative paths, parents first), which the guest binds one by one.
//
// Read-only: "ro" makes the entry read-only, not the mounts below it (as
// runc's "ro" without "rro"), "rro" makes them all read-only. The guest
// does the same in its view; the host's side holds even if the guest's
// root undid it.
func (sh *share) add(m specs.Mount, trees mountTrees) (_ string, _ []string, err error) {
	rec := hasOption(m.Options, "rbind")
	fi, err := statSource(trees, m.Source, rec)
	if err != nil {
		return "", nil, fmt.Errorf("bind mount on %q: %w", m.Destination, err)
	}
	slot := filepath.Join(sh.dir, strconv.Itoa(len(sh.entries)))
	if err := os.Mkdir(slot, 0o700); err != nil {
		return "", nil, fmt.Errorf("creating share entry for %q: %w", m.Destination, err)
	}
	defer func() {
		if err != nil {
			os.Remove(slot)
		}
	}()
	base := filepath.Base(m.Source)
	if base == "/" || base == "." {
		base = "root"
	}
	name := filepath.Join(filepath.Base(slot), base)
	entry := filepath.Join(slot, base)
	if fi.IsDir() {
		err = os.Mkdir(entry, 0o700)
	} else {
		var f *os.File
		if f, err = os.OpenFile(entry, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("creating share entry for %q: %w", m.Destination, err)
	}
	ro, rro := hasOption(m.Options, "ro"), hasOption(m.Options, "rro")
	var subs []string
	if rec && fi.IsDir() {
		if subs, err = submountsFunc(m.Source); err != nil {
			os.Remove(entry)
			return "", nil, fmt.Errorf("bind mount on %q: %w", m.Destination, err)
		}
	}
	if sh.served != "" && !slaveOrShared(m.Options) {
		// A pod member's entry, mounted in virtiofsd's namespace alone:
		// in the host's, its copies of the source's mount points would
		// keep them busy (under runc a container's copies are in its own
		// namespace, and the host may remove a directory mounted on below
		// a running container's volume: critest's read-only mount specs
		// do), and virtiofsd's copy would miss the read-only flags (it
		// got the bind by propagation, before the remount). An entry
		// with slave propagation stays the host's peer, which brings it
		// the host's later mounts.
		if err := attachServedFunc(sh.served, m.Source, entry, rec, ro, rro, trees); err != nil {
			os.Remove(entry)
			return "", nil, fmt.Errorf("bind mount on %q: %w", m.Destination, err)
		}
		sh.entries = append(sh.entries, entry)
		return name, subs, nil
	}
	flags := uintptr(unix.MS_BIND)
	if rec {
		flags |= unix.MS_REC
	}
	if err := bindSource(trees, m.Source, entry, rec); err != nil {
		os.Remove(entry)
		return "", nil, fmt.Errorf("binding %q into the shared directory: %w", m.Source, err)
	}
	sh.entries = append(sh.entries, entry)
	// The guest makes its bind read-only too, but its root could undo
	// that: a read-only source is read-only on the host side as well.
	// A remount of a bind changes that mount alone, MS_REC or not.
	if ro {
		if err := mountFunc("", entry, "", flags|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return "", nil, fmt.Errorf("making the share entry of %q read-only: %w", m.Source, err)
		}
	}
	if rro {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := mountSetattrFunc(unix.AT_FDCWD, entry, unix.AT_RECURSIVE, attr); err != nil {
			return "", nil, fmt.Errorf("making the share entry of %q recursively read-only: %w", m.Source, err)
		}
	}
	return name, subs, nil
}

// slaveOrShared reports whether a mount's propagation receives the host's
// later mounts (slave, shared): its share entry must stay the host's peer.
func slaveOrShared(opts []string) bool {
	for _, o := range opts {
		switch o {
		case "slave", "rslave", "shared", "rshared":
			return true
		}
	}
	return false
}

// hostSubmounts lists the mount points strictly below dir in this mount
// namespace, relative to dir, parents first.
func hostSubmounts(dir string) ([]string, error) {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("listing the mounts below %q: %w", dir, err)
	}
	points := make([]string, 0, len(infos))
	for _, i := range infos {
		points = append(points, i.Mountpoint)
	}
	return submountsBelow(dir, points), nil
}

// submountsBelow keeps the mount points strictly below dir, relative to
// it, each once, parents before children.
func submountsBelow(dir string, points []string) []string {
	dir = filepath.Clean(dir)
	seen := map[string]bool{}
	var out []string
	for _, p := range points {
		rel, err := filepath.Rel(dir, filepath.Clean(p))
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || seen[rel] {
			continue
		}
		seen[rel] = true
		out = append(out, rel)
	}
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i], "/") < strings.Count(out[j], "/")
	})
	return out
}

// vmmShare is the VMM's view of the share: uncached, so that each side
// sees the other's writes at once.
func (sh *share) vmmShare() vmm.Share {
	return vmm.Share{Dir: sh.dir, Tag: shareTag, Mode: sh.fs, Cache: vmm.CacheNone}
}

// findVirtiofsd is vmm.FindVirtiofsd; tests replace it.
var findVirtiofsd = vmm.FindVirtiofsd

// shareFS picks the share's filesystem for a driver (design section 6):
// virtiofs by default where virtiofsd exists, 9p where it does not (qemu
// only: cloud-hypervisor has no 9p) or when the config says so.
func shareFS(c Config, driver string) (string, error) {
	return shareFSWith(c, driver, findVirtiofsd)
}

// shareFSWith is shareFS with a given virtiofsd lookup.
func shareFSWith(c Config, driver string, findVirtiofsd func(string) (string, error)) (string, error) {
	switch c.ShareFS {
	case vmm.Share9p:
		if driver == "cloud-hypervisor" {
			return "", fmt.Errorf("config: shareFS %q: cloud-hypervisor has no 9p: %w", c.ShareFS, ErrUnsupported)
		}
		return vmm.Share9p, nil
	case vmm.ShareVirtiofs:
		if _, err := findVirtiofsd(c.VirtiofsdBinary); err != nil {
			return "", err
		}
		return vmm.ShareVirtiofs, nil
	}
	if _, err := findVirtiofsd(c.VirtiofsdBinary); err == nil {
		return vmm.ShareVirtiofs, nil
	} else if driver == "cloud-hypervisor" {
		return "", err
	}
	return vmm.Share9p, nil
}

// agentShare tells the agent where to mount the share.
func (sh *share) agentShare() *agentapi.Share {
	if sh == nil {
		return nil
	}
	return &agentapi.Share{Tag: shareTag, Fstype: sh.fs, MountPoint: shareMount}
}

// remove unmounts every entry and removes the directory.
func (sh *share) remove() error {
	if sh == nil {
		return nil
	}
	return removeShareDir(sh.dir)
}

// removeShares removes the shared directories of a state dir: the host
// bind mounts' and the container roots'.
func removeShares(stateDir string) error {
	return errors.Join(removeShareDir(filepath.Join(stateDir, shareDirName)),
		removeShareDir(filepath.Join(stateDir, rootShareDirName)))
}

// removeShareDir unmounts whatever is mounted on the entries of a shared
// directory and on itself and removes it; it also serves delete after a crashed monitor.
// An entry is a mount point (the root share's) or a slot directory holding
// one (share.add's <n>/<name>). It never removes recursively: an entry
// still mounted (EBUSY) or not empty stops it, so a host directory bound into
// the share is never touched.
func removeShareDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading shared directory %q: %w", dir, err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		err := removeShareEntry(p)
		if errors.Is(err, unix.ENOTEMPTY) && e.IsDir() {
			// A slot: its entry, then itself.
			err = removeShareSlot(p)
		}
		if err != nil {
			return err
		}
	}
	// The root share and a pod's share are mount points themselves
	// (makeSharedDir); other shares are not (EINVAL).
	if err := unmountFunc(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %q: %w", dir, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing shared directory %q: %w", dir, err)
	}
	return nil
}

// removeShareEntry unmounts what is mounted on p, if anything, and removes
// p, which must then be empty; a missing p is fine.
//
// The guest can write in the share: a symlink or other special file there
// may be its own, so it is only unlinked, never followed (an unmount that
// followed one would detach a host mount it points to).
func removeShareEntry(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing share entry %q: %w", p, err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing share entry %q: %w", p, err)
		}
		return nil
	}
	if err := unmountFunc(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %q: %w", p, err)
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		// A file entry is an empty placeholder once its bind is gone.
		return fmt.Errorf("removing share entry %q: it still holds data (a bind not undone?): %w", p, unix.ENOTEMPTY)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing share entry %q: %w", p, err)
	}
	return nil
}

// removeShareSlot removes a slot of share.add (<n>/<name>): its entries,
// then the slot itself, which is never a mount point.
func removeShareSlot(slot string) error {
	inner, err := os.ReadDir(slot)
	if err != nil {
		return fmt.Errorf("reading share slot %q: %w", slot, err)
	}
	for _, e := range inner {
		if err := removeShareEntry(filepath.Join(slot, e.Name())); err != nil {
			return err
		}
	}
	if err := os.Remove(slot); err != nil {
		return fmt.Errorf("removing share slot %q: %w", slot, err)
	}
	return nil
}
