package bundle

import "errors"

var (
	// ErrInvalidBundle is wrapped by every error Load returns for a bundle
	// that is missing, malformed or not runnable by this runtime.
	ErrInvalidBundle = errors.New("invalid bundle")

	// ErrUnsupportedVersion is wrapped (with ErrInvalidBundle) when the
	// bundle's ociVersion has a major version other than 1.
	ErrUnsupportedVersion = errors.New("unsupported ociVersion")

	// ErrUnreadable is wrapped when the root filesystem holds something that
	// mkfs.btrfs could not read (a file, directory or xattr): it would fail
	// the whole build.
	ErrUnreadable = errors.New("unreadable rootfs entry")

	// ErrXattrTooLarge is wrapped when an xattr's name and value do not fit
	// in a btrfs metadata item.
	ErrXattrTooLarge = errors.New("xattr too large for btrfs")

	// ErrInodeCollision is wrapped when two distinct files in the root
	// filesystem share an inode number, e.g. because the tree spans several
	// filesystems or holds a bind mount: mkfs.btrfs 6.2 numbers image inodes
	// after the source inode numbers and would merge them into one.
	ErrInodeCollision = errors.New("inode number collision in rootfs")

	// ErrMkfs is wrapped when mkfs.btrfs fails or times out.
	ErrMkfs = errors.New("mkfs.btrfs failed")

	// ErrUnsupportedPlatform is returned by BuildDisk on systems other than
	// Linux.
	ErrUnsupportedPlatform = errors.New("building disk images is only supported on linux")
)
