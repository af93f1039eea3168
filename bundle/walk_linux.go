package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxXattrSize is BTRFS_MAX_XATTR_SIZE for 16 KiB nodes: the leaf's data
// area (16384 - 101 bytes of header) less one item header (25) and the dir
// item that holds the xattr (30).
const maxXattrSize = 16384 - 101 - 25 - 30

// seenInode remembers the first path of an inode number.
type seenInode struct {
	dev  uint64
	path string
}

// scanRootfs walks root (a directory, symlinks resolved) the way mkfs.btrfs
// 6.2 --rootdir will: it sizes the content, collects device nodes, and fails
// with an error naming the file on anything mkfs.btrfs could not copy.
func scanRootfs(root string) (*scan, error) {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: root, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("rootfs %q is not a directory", root)
	}
	sc := &scan{
		rootMode: st.Mode & 0o7777,
		rootUID:  st.Uid,
		rootGID:  st.Gid,
	}
	inodes := make(map[uint64]seenInode)
	var xbuf []byte

	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// WalkDir could not read the directory p (or lstat the root).
			return fmt.Errorf("%w: %w", ErrUnreadable, err)
		}
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%w: %w", ErrUnreadable, &fs.PathError{Op: "lstat", Path: p, Err: err})
		}
		isRoot := p == root
		if !isRoot {
			sc.usage.names++
			sc.usage.nameBytes += int64(len(d.Name()))
		}

		// Every name of a device node is listed, hardlinks included: each
		// name refers to the 0,0 node mkfs.btrfs writes.
		if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
			typ := "c"
			if t == unix.S_IFBLK {
				typ = "b"
			}
			rel, _ := filepath.Rel(root, p)
			sc.devices = append(sc.devices, DeviceNode{
				Path:  "/" + filepath.ToSlash(rel),
				Type:  typ,
				Major: unix.Major(st.Rdev),
				Minor: unix.Minor(st.Rdev),
				Mode:  st.Mode & 0o7777,
				UID:   st.Uid,
				GID:   st.Gid,
			})
		}

		// mkfs.btrfs 6.2 numbers each image inode st_ino+256 and treats a
		// number it has seen before as a hardlink to that inode. The root
		// directory is always inode 256, whatever its st_ino.
		if prev, ok := inodes[st.Ino]; ok && !isRoot {
			switch {
			case prev.dev != st.Dev:
				return fmt.Errorf("%w: %q and %q have the same inode number %d on different filesystems (mkfs.btrfs 6.2 would merge them; the rootfs must be one filesystem)",
					ErrInodeCollision, prev.path, p, st.Ino)
			case st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink < 2:
				return fmt.Errorf("%w: %q appears again as %q (a bind mount inside the rootfs?)", ErrInodeCollision, prev.path, p)
			}
			return nil // another name of a hardlinked file: no new inode
		}
		if !isRoot {
			inodes[st.Ino] = seenInode{dev: st.Dev, path: p}
		}
		sc.usage.inodes++

		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			// mkfs.btrfs chdir()s into and scandir()s every directory.
			if err := unix.Faccessat(unix.AT_FDCWD, p, unix.R_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
				return fmt.Errorf("%w: directory %q cannot be listed and entered by uid %d: %w", ErrUnreadable, p, unix.Geteuid(), err)
			}
		case unix.S_IFREG:
			// mkfs.btrfs opens every non-empty regular file for reading.
			if st.Size > 0 {
				if err := unix.Faccessat(unix.AT_FDCWD, p, unix.R_OK, unix.AT_EACCESS); err != nil {
					return fmt.Errorf("%w: file %q cannot be read by uid %d: %w", ErrUnreadable, p, unix.Geteuid(), err)
				}
			}
			sc.usage.addFile(st.Size)
		case unix.S_IFLNK:
			sc.usage.addSymlink(st.Size)
		}

		// mkfs.btrfs copies every xattr (llistxattr/lgetxattr) and fails on
		// any error but ENOTSUP. The root directory's are not copied.
		if !isRoot {
			var err error
			if xbuf, err = scanXattrs(p, xbuf, &sc.usage); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// scanXattrs accounts the xattrs of p; buf is reused between calls.
func scanXattrs(p string, buf []byte, u *usage) ([]byte, error) {
	if len(buf) == 0 {
		// An empty buffer would make llistxattr return the size only.
		buf = make([]byte, 4096)
	}
	for {
		n, err := unix.Llistxattr(p, buf)
		switch {
		case errors.Is(err, unix.ENOTSUP):
			return buf, nil
		case errors.Is(err, unix.ERANGE):
			// buf is too small: ask for the size.
			if n, err = unix.Llistxattr(p, nil); err != nil {
				return buf, fmt.Errorf("%w: listing xattrs of %q: %w", ErrUnreadable, p, err)
			}
			buf = make([]byte, n+256)
			continue
		case err != nil:
			return buf, fmt.Errorf("%w: listing xattrs of %q: %w", ErrUnreadable, p, err)
		}
		if n == 0 {
			return buf, nil
		}
		for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
			size, err := unix.Lgetxattr(p, name, nil)
			switch {
			case errors.Is(err, unix.ENOTSUP):
				return buf, nil // mkfs.btrfs skips the rest too
			case errors.Is(err, unix.ENODATA):
				continue // removed meanwhile
			case err != nil:
				return buf, fmt.Errorf("%w: reading xattr %s of %q: %w", ErrUnreadable, name, p, err)
			}
			// An xattr is one item in a 16 KiB leaf; larger ones (XFS allows
			// 64 KiB) make mkfs.btrfs fail.
			if len(name)+size > maxXattrSize {
				return buf, fmt.Errorf("%w: xattr %s of %q has %d bytes, btrfs holds at most %d for name and value", ErrXattrTooLarge, name, p, len(name)+size, maxXattrSize)
			}
			u.xattrs++
			u.xattrBytes += int64(len(name) + size)
		}
		return buf, nil
	}
}
