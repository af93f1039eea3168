package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Container roots reach the guest as the bundle's rootfs itself (config
// Rootfs "share", docs/rootfs-writes.md): runc's contract is that the
// container's files live there (podman's overlay mount, containerd's
// snapshot, a plain directory), and everything an engine does with them
// (restart, diff, cp, commit, build) reads them there. <state>/root holds
// one entry per container of the VM, a recursive bind of its rootfs; the
// VM gets the directory as a share of its own with the host's page cache
// (mmap works, metadata is cached about a second) and extended attributes
// (file capabilities); the guest mounts it at rootShareMount and binds the
// container's entry on its root.
const (
	rootShareDirName = "root"
	rootShareTag     = "initos-root"
	rootShareMount   = "/run/initos/roots"
	// rootEntry is the entry of the VM's own container (a pod's sandbox);
	// pod members get "m-" and a random suffix.
	rootEntry = "c"
)

// rootShare is the prepared directory of container roots of one VM.
type rootShare struct {
	dir string
	fs  string // vmm.ShareVirtiofs or vmm.Share9p
}

// newRootShare makes the directory of container roots under stateDir,
// shared by fs.
func newRootShare(stateDir, fs string) (*rootShare, error) {
	rs := &rootShare{dir: filepath.Join(stateDir, rootShareDirName), fs: fs}
	if err := makeSharedDir(rs.dir); err != nil {
		return nil, fmt.Errorf("the root share: %w", err)
	}
	return rs, nil
}

// makeSharedDir creates dir as a shared mount of its own (a bind on
// itself): virtiofsd's mount namespace (a slave copy of ours from its
// start) then sees what is bound under dir after boot, such as a pod
// member's root and bind mounts. On error nothing is left.
func makeSharedDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating shared directory %q: %w", dir, err)
	}
	if err := mountFunc(dir, dir, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dir)
		return fmt.Errorf("binding shared directory %q on itself: %w", dir, err)
	}
	if err := mountFunc("", dir, "", unix.MS_SHARED, ""); err != nil {
		_ = removeShareDir(dir)
		return fmt.Errorf("making %q a shared mount: %w", dir, err)
	}
	return nil
}

// bind makes entry name a recursive bind of rootfs (or the tree of it
// that trees holds). It stays writable
// for a read-only root too: the agent makes the spec's mount points in it
// first and then remounts its bind read-only (runc's order, which a
// privileged container could undo under runc as well). On error nothing
// is left mounted.
func (rs *rootShare) bind(rootfs, name string, trees mountTrees) (err error) {
	fi, err := statSource(trees, rootfs, true)
	if err != nil {
		return fmt.Errorf("sharing the rootfs: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("sharing the rootfs: %q is not a directory", rootfs)
	}
	entry := filepath.Join(rs.dir, name)
	if err := os.Mkdir(entry, 0o755); err != nil {
		return fmt.Errorf("creating root share entry %q: %w", entry, err)
	}
	defer func() {
		if err != nil {
			_ = rs.unbind(name)
		}
	}()
	if err := bindSource(trees, rootfs, entry, true); err != nil {
		return fmt.Errorf("binding the rootfs %q on %q: %w", rootfs, entry, err)
	}
	return nil
}

// unbind unmounts entry name and removes it; an entry that is gone is
// fine.
func (rs *rootShare) unbind(name string) error {
	entry := filepath.Join(rs.dir, name)
	if err := unmountFunc(entry, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting the shared rootfs %q: %w", entry, err)
	}
	if err := os.Remove(entry); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing root share entry %q: %w", entry, err)
	}
	return nil
}

// vmmShare is the VMM's view of the root share: cached (mmap, speed) and
// with extended attributes.
func (rs *rootShare) vmmShare() vmm.Share {
	return vmm.Share{Dir: rs.dir, Tag: rootShareTag, Mode: rs.fs, Cache: vmm.CacheAuto, Xattr: true}
}

// agentShare tells the agent where to mount the root share.
func (rs *rootShare) agentShare() *agentapi.Share {
	return &agentapi.Share{Tag: rootShareTag, Fstype: rs.fs, MountPoint: rootShareMount, Mmap: true}
}

// remove unmounts every entry and removes the directory (never
// recursively: see removeShareDir); a nil share is fine.
func (rs *rootShare) remove() error {
	if rs == nil {
		return nil
	}
	return removeShareDir(rs.dir)
}
