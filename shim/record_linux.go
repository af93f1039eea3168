package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/network"
)

// recordFile, in the bundle, names what a container holds on the host, so
// that containerd's cleanup ("shim delete") can remove it after the shim
// server died.
const recordFile = "initos-shim.json"

type record struct {
	// StateDir is the container's VM state (sockets, console log).
	StateDir string `json:"stateDir"`
	// Netns is the network namespace the shim created ("": none).
	Netns string `json:"netns,omitempty"`
	// Rootfs is set while the snapshotter's mounts are mounted on
	// <bundle>/rootfs.
	Rootfs bool `json:"rootfs,omitempty"`
	// VMMPid is the VMM's pid once it runs.
	VMMPid int `json:"vmmPid,omitempty"`
	// Disk is the container's disk image.
	Disk string `json:"disk,omitempty"`
}

func readRecord(bundle string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(bundle, recordFile))
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parsing %q: %w", filepath.Join(bundle, recordFile), err)
	}
	return &r, nil
}

func (r *record) save(bundle string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(bundle, recordFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing the shim record of bundle %q: %w", bundle, err)
	}
	if err := os.Rename(tmp, filepath.Join(bundle, recordFile)); err != nil {
		return fmt.Errorf("writing the shim record of bundle %q: %w", bundle, err)
	}
	return nil
}

// cleanup removes everything the record names and then the record: the
// VMM (only when the pid still runs a VMM of this state dir), the disk,
// the network namespace, the rootfs mount and the state dir.
func (r *record) cleanup(bundle string) error {
	var errs []error
	if r.VMMPid > 0 && vmmOf(r.VMMPid, r.StateDir) {
		syscall.Kill(r.VMMPid, syscall.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for vmmOf(r.VMMPid, r.StateDir) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if r.Disk != "" {
		if err := os.Remove(r.Disk); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing disk %q: %w", r.Disk, err))
		}
	}
	if r.Netns != "" {
		if err := network.RemoveNetns(r.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		errs = append(errs, err)
	}
	if r.StateDir != "" {
		if err := removeStateDir(r.StateDir); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(filepath.Join(bundle, recordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// vmmOf reports whether pid runs a process whose command line names
// stateDir (a VMM of that container, not a recycled pid).
func vmmOf(pid int, stateDir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return strings.Contains(string(b), stateDir)
}

// mountRootfs mounts the snapshotter's mounts on target.
func mountRootfs(ms []mount.Mount, target string) error {
	if err := os.MkdirAll(target, 0o711); err != nil {
		return fmt.Errorf("creating rootfs dir %q: %w", target, err)
	}
	if err := mount.All(ms, target); err != nil {
		return fmt.Errorf("mounting the rootfs on %q: %w", target, err)
	}
	return nil
}

// unmountRootfs unmounts whatever is mounted on target (nothing is fine).
func unmountRootfs(target string) error {
	if err := mount.UnmountRecursive(target, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmounting the rootfs %q: %w", target, err)
	}
	return nil
}

// removeStateDir removes a container's VM state dir. Its mounts (the
// share's binds of host paths, the network namespace) are detached first
// and the removal refused while any is left: a recursive removal through a
// bind of a host directory would delete the host's files.
func removeStateDir(dir string) error {
	if err := mount.UnmountRecursive(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmounting what is left under state dir %q: %w", dir, err)
	}
	left, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("state dir %q still has mounts (%s): not removed", dir, strings.Join(left, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing state dir %q: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	var out []string
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// snapshotKey names the content of a fresh snapshot for the disk cache:
// the read-only layers under an overlay whose upper dir is still empty
// (containerd's committed snapshots never change), or a read-only bind.
// Anything else (a written upper dir, a writable bind) has no key.
func snapshotKey(ms []mount.Mount) string {
	if len(ms) != 1 {
		return ""
	}
	m := ms[0]
	switch m.Type {
	case "overlay":
		return bundle.OverlayKey(m.Options)
	case "bind":
		for _, o := range m.Options {
			if o == "ro" {
				return "bind:" + m.Source
			}
		}
	}
	return ""
}
