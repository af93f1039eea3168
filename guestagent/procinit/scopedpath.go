package procinit

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds the symlinks followed while resolving one path.
const maxSymlinks = 255

// LinkReader is what ScopedJoin needs of a filesystem.
type LinkReader interface {
	Lstat(path string) (fs.FileInfo, error)
	Readlink(path string) (string, error)
}

// ScopedJoin joins unsafe to root as if root were "/": symlinks met on the
// way are followed, absolute ones relative to root, and ".." stops at root,
// so the result never leaves root (github.com/cyphar/filepath-securejoin's
// rule). Components that do not exist are appended as they are. Container
// images hold such links (/var/run -> /run); followed naively, a mount at
// /var/run/x would land in the agent's own /run.
func ScopedJoin(fsys LinkReader, root, unsafe string) (string, error) {
	root = filepath.Clean(root)
	var resolved string // relative to root, always clean, never starts with ".."
	remaining := unsafe
	links := 0
	for remaining != "" {
		var part string
		part, remaining, _ = strings.Cut(strings.TrimLeft(remaining, "/"), "/")
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = parentWithin(resolved)
			continue
		}
		candidate := path.Join(resolved, part)
		full := filepath.Join(root, candidate)
		fi, err := fsys.Lstat(full)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Nothing more to follow: append the rest as it is, still
				// clamped at root.
				resolved = path.Join("/", candidate, remaining)[1:]
				remaining = ""
				continue
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = candidate
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("resolving %q in %q: %w", unsafe, root, ErrTooManySymlinks)
		}
		target, err := fsys.Readlink(full)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		remaining = target + "/" + remaining
	}
	return filepath.Join(root, resolved), nil
}

// parentWithin is the parent of a root-relative clean path, "" at the top.
func parentWithin(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Within reports whether the clean path p is dir or below it (not a
// sibling that only shares its prefix, as /proc2 does /proc's).
func Within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}
