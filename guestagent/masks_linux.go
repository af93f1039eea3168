package guestagent

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maskPaths applies the spec's masked and read-only paths under rootfs
// (only those below under, when set: a pod member's own /proc gets them
// again) and returns the mount points it made.
//
// config-linux.md "Masked Paths": "The runtime MUST mask these paths
// inside the container so that they cannot be read by the container
// processes"; "Readonly Paths": "The runtime MUST set these paths as
// readonly inside the container." A path that does not exist is skipped,
// as runc does.
func maskPaths(sys system, rootfs string, masked, readonly []string, under string) (mounted []string, err error) {
	in := func(p string) bool {
		p = path.Clean("/" + p)
		return under == "" || p == under || strings.HasPrefix(p, under+"/")
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
func existing(sys system, rootfs, p string) (string, fs.FileInfo, error) {
	target, err := scopedJoin(sys, rootfs, p)
	if err != nil {
		return "", nil, err
	}
	fi, err := sys.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return target, nil, nil
	}
	return target, fi, err
}
