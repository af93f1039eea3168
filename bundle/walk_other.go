//go:build !linux

package bundle

// scanRootfs needs Linux stat and xattr details (inode and device numbers,
// faccessat, llistxattr) and mkfs.btrfs.
func scanRootfs(root string) (*scan, error) {
	return nil, ErrUnsupportedPlatform
}
