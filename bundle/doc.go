// Package bundle turns an OCI bundle into what an initos-runtime VM needs.
//
// Load reads and validates a bundle directory (config.json plus the root
// filesystem) with the runtime-spec Go types, rejecting malformed bundles
// with an error that names the problem and wraps ErrInvalidBundle.
//
// BuildDisk turns the bundle's root filesystem into a btrfs disk image with
// mkfs.btrfs --rootdir (no root privileges needed). The walk that sizes the
// image also collects what mkfs.btrfs 6.2 loses and the guest agent must
// restore: device node numbers (mkfs.btrfs writes 0,0) and the mode and owner
// of the root directory (mkfs.btrfs creates it 0755 root:root).
//
// Measured with btrfs-progs 6.2, the image keeps owners, permission bits
// including setuid/setgid/sticky, all xattrs (security.capability, user.*),
// hardlinks, symlinks, fifos and sockets, and timestamps to the second; it
// drops the nanoseconds, device numbers and the root directory's mode, owner
// and xattrs. mkfs.btrfs 6.2 also numbers image inodes after the source's
// inode numbers, so BuildDisk refuses a tree that spans filesystems with
// colliding numbers, and it aborts on an xattr larger than a btrfs item, so
// BuildDisk refuses those too, naming the file.
package bundle
