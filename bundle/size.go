package bundle

// Image sizing. The numbers model what mkfs.btrfs 6.2 --rootdir writes
// (mkfs/rootdir.c), with 4 KiB sectors and 16 KiB nodes:
//   - a regular file smaller than a sector is stored inline in its metadata
//     leaf; larger files get data extents of at most 1 MiB, each with a file
//     extent item, an extent item and a 4-byte crc32c per sector;
//   - every inode has an inode item and, for its name, an inode ref plus a
//     dir item and a dir index in its parent; every xattr is one item;
//   - symlink targets are inline extents.
//
// Metadata leaves are counted as only half full (what B-tree splits leave in
// the worst case), and the chunks mkfs.btrfs allocates whatever the content
// are added (fixedOverhead). TestBuildDiskMkfs measures the space mkfs.btrfs
// took (metadata and system chunks in full, used data) against this estimate:
// on 20,000 100-byte files, 10,000 3,000-byte files, 5,000 empty files with
// 250-byte names and xattrs and 3,000 mixed files the estimate was 1.3 to 2.5
// times what mkfs.btrfs took; on Debian trees (a kernel's modules, /usr/share/doc,
// /usr/lib/python3, /usr/share/locale, /usr/lib/x86_64-linux-gnu; 44 MB to
// 1 GB) 1.03 to 1.4 times, at least 25 MiB above.
//
// mkfs.btrfs 6.2 itself enlarges an image that is smaller than its own
// estimate of the tree (16 KiB of metadata per inode plus 1/8 of the data),
// so it never runs out of space; the estimate here is what makes the
// requested free space really free.

const (
	sectorSize = 4096
	maxExtent  = 1 << 20 // mkfs.btrfs --rootdir writes extents of at most 1 MiB

	itemHeader     = 25 // struct btrfs_item
	inodeItem      = 160
	nameItem       = 30 // dir item / dir index / xattr item, without the name
	inodeRef       = 10
	inlineExtent   = 21 // file extent item header of an inline extent
	fileExtentItem = 53
	extentItem     = 24 + 29 // extent item plus its inline data backref
	csumPerSector  = 4       // crc32c
	metaSlack      = 2       // leaves half full at worst

	// fixedOverhead: 1 MiB reserved for the superblock, the 4 MiB system
	// chunk, three 8 MiB metadata chunks (mkfs.btrfs keeps the temporary one
	// it starts with and, measured, allocates two or three for the same
	// tree of a few MiB of metadata, depending on directory order), one
	// partly used 8 MiB data chunk, and the trees of an empty filesystem.
	fixedOverhead = (1 + 4 + 3*8 + 8 + 3) << 20

	sizeAlign = 1 << 20 // images are a whole number of MiB
)

// usage is what the rootfs walk measures for sizing.
type usage struct {
	inodes       int64 // distinct inodes, the root directory included
	nameBytes    int64 // bytes of all directory entry names
	names        int64 // directory entries (hardlinks each count)
	inlineBytes  int64 // data stored inline: small files and symlink targets
	inlineFiles  int64 // inline extents
	dataBytes    int64 // regular files stored in extents, rounded up to sectors
	extents      int64 // data extents (1 MiB each at most)
	xattrs       int64 // xattr items
	xattrBytes   int64 // bytes of xattr names and values
	contentBytes int64 // sum of regular file sizes, each inode once
}

// addFile accounts a regular file (one inode) of size bytes.
func (u *usage) addFile(size int64) {
	u.contentBytes += size
	switch {
	case size == 0:
	case size < sectorSize:
		u.inlineFiles++
		u.inlineBytes += size
	default:
		blocks := (size + sectorSize - 1) / sectorSize
		u.dataBytes += blocks * sectorSize
		u.extents += (size + maxExtent - 1) / maxExtent
	}
}

// addSymlink accounts a symlink whose target is n bytes long (stored inline
// with its terminating NUL).
func (u *usage) addSymlink(n int64) {
	u.inlineFiles++
	u.inlineBytes += n + 1
}

// metadataBytes is the estimated metadata the tree needs.
func (u usage) metadataBytes() int64 {
	items := u.inodes*(itemHeader+inodeItem) +
		u.names*(3*itemHeader+2*nameItem+inodeRef) + 3*u.nameBytes +
		u.xattrs*(itemHeader+nameItem) + u.xattrBytes +
		u.inlineFiles*(itemHeader+inlineExtent) + u.inlineBytes +
		u.extents*(2*itemHeader+fileExtentItem+extentItem) +
		u.dataBytes/sectorSize*csumPerSector
	return metaSlack * items
}

// estimate is the space the tree needs in a btrfs image, overheads included.
func (u usage) estimate() int64 {
	return fixedOverhead + u.dataBytes + u.metadataBytes()
}

// imageSize is the size to give the sparse image file: the estimate plus
// the requested free space (0: DefaultFreeSpace, negative: none), rounded up
// to a MiB and at least MinImageSize.
func imageSize(u usage, freeSpace int64) int64 {
	switch {
	case freeSpace == 0:
		freeSpace = DefaultFreeSpace
	case freeSpace < 0:
		freeSpace = 0
	}
	size := u.estimate() + freeSpace
	size = (size + sizeAlign - 1) / sizeAlign * sizeAlign
	return max(size, MinImageSize)
}

// scan is the result of walking a rootfs (scanRootfs).
type scan struct {
	usage   usage
	devices []DeviceNode
	// The rootfs directory's own permission bits and owner.
	rootMode, rootUID, rootGID uint32
}
