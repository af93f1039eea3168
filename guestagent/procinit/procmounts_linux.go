package procinit

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// keptMount is a mount under the spec's /proc, cloned before the helper's
// own /proc covers it, and where it goes back.
type keptMount struct {
	fd     int
	target string
}

// treeOps are the mount API calls keepMounts and restoreMounts make
// (open_tree(2), move_mount(2) and close); tests fake them.
type treeOps struct {
	clone func(path string) (int, error)
	move  func(fd int, target string) error
	close func(fd int) error
}

// realTreeOps clones a mount with the mounts on it (AT_RECURSIVE) and
// moves a clone onto a path.
var realTreeOps = treeOps{
	clone: func(path string) (int, error) {
		return unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	},
	move: func(fd int, target string) error {
		return unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
	},
	close: unix.Close,
}

// keepMounts clones the mounts on paths (Config.ProcMounts: the mount
// points Setup made under the spec's /proc, in mount order), each with
// the mounts on it, so that they survive the helper's own /proc mount;
// restoreMounts puts them back on it.
func keepMounts(ops treeOps, paths []string) (kept []keptMount, err error) {
	defer func() {
		if err != nil {
			closeKept(ops, kept)
			kept = nil
		}
	}()
	for _, target := range topMounts(paths) {
		fd, err := ops.clone(target)
		if err != nil {
			return kept, fmt.Errorf("keeping the mount on %q: %w", target, err)
		}
		kept = append(kept, keptMount{fd: fd, target: target})
	}
	return kept, nil
}

// restoreMounts moves the kept mounts back onto their paths, in order, and
// closes them all.
func restoreMounts(ops treeOps, kept []keptMount) error {
	defer closeKept(ops, kept)
	for _, k := range kept {
		if err := ops.move(k.fd, k.target); err != nil {
			return fmt.Errorf("mounting %q again on the process's /proc: %w", k.target, err)
		}
	}
	return nil
}

func closeKept(ops treeOps, kept []keptMount) {
	for _, k := range kept {
		_ = ops.close(k.fd)
	}
}

// topMounts are paths in their order, each once, without those below
// another of them (a recursive clone of that one takes them along).
func topMounts(paths []string) []string {
	var tops []string
	for _, p := range paths {
		if !slices.ContainsFunc(tops, func(t string) bool { return Within(p, t) }) {
			tops = append(tops, p)
		}
	}
	return tops
}
