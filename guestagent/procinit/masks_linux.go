package procinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// Mounter is what MaskPaths needs of the system: path lookups and mount(2).
type Mounter interface {
	LinkReader
	Stat(path string) (fs.FileInfo, error)
	Mount(source, target, fstype string, flags uintptr, data string) error
}

// osMounter is the real system as a Mounter.
type osMounter struct{}

func (osMounter) Lstat(p string) (fs.FileInfo, error) { return os.Lstat(p) }
func (osMounter) Readlink(p string) (string, error)   { return os.Readlink(p) }
func (osMounter) Stat(p string) (fs.FileInfo, error)  { return os.Stat(p) }
func (osMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

// MaskPaths applies the spec's masked and read-only paths under rootfs
// (only those below under, when set: a pod member's own /proc gets them
// again) and returns the mount points it made.
//
// config-linux.md "Masked Paths": "The runtime MUST mask these paths
// inside the container so that they cannot be read by the container
// processes"; "Readonly Paths": "The runtime MUST set these paths as
// readonly inside the container." A path that does not exist is skipped,
// as runc does.
func MaskPaths(sys Mounter, rootfs string, masked, readonly []string, under string) (mounted []string, err error) {
	in := func(p string) bool {
		return under == "" || Within(path.Clean("/"+p), under)
	}
	for _, p := range masked {
		if !in(p) {
			continue
		}
		target, fi, err := existing(sys, rootfs, p)
		if err != nil {
			return mounted, fmt.Errorf("masking %q: %w", p, err)
		}
		if fi == nil {
			continue
		}
		if fi.IsDir() {
			err = sys.Mount("tmpfs", target, "tmpfs", unix.MS_RDONLY, "")
		} else {
			err = sys.Mount("/dev/null", target, "", unix.MS_BIND, "")
		}
		if err != nil {
			return mounted, fmt.Errorf("masking %q: %w", p, err)
		}
		mounted = append(mounted, target)
	}
	for _, p := range readonly {
		if !in(p) {
			continue
		}
		target, fi, err := existing(sys, rootfs, p)
		if err != nil {
			return mounted, fmt.Errorf("making %q read-only: %w", p, err)
		}
		if fi == nil {
			continue
		}
		if err := sys.Mount(target, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return mounted, fmt.Errorf("making %q read-only: %w", p, err)
		}
		mounted = append(mounted, target)
		if err := sys.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return mounted, fmt.Errorf("making %q read-only: %w", p, err)
		}
	}
	return mounted, nil
}

// existing resolves p inside rootfs; fi is nil when nothing is there.
func existing(sys Mounter, rootfs, p string) (string, fs.FileInfo, error) {
	target, err := ScopedJoin(sys, rootfs, p)
	if err != nil {
		return "", nil, err
	}
	fi, err := sys.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return target, nil, nil
	}
	return target, fi, err
}
