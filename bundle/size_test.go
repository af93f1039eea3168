package bundle

import "testing"

func TestUsageAccounting(t *testing.T) {
	tests := []struct {
		name        string
		files       []int64
		links       []int64 // symlink target lengths
		inlineFiles int64
		inlineBytes int64
		dataBytes   int64
		extents     int64
	}{
		{name: "empty file", files: []int64{0}},
		{name: "inline file", files: []int64{100}, inlineFiles: 1, inlineBytes: 100},
		{name: "largest inline file", files: []int64{sectorSize - 1}, inlineFiles: 1, inlineBytes: sectorSize - 1},
		{name: "one sector", files: []int64{sectorSize}, dataBytes: sectorSize, extents: 1},
		{name: "rounded up", files: []int64{sectorSize + 1}, dataBytes: 2 * sectorSize, extents: 1},
		{name: "1 MiB extents", files: []int64{5<<19 + 1}, dataBytes: 5<<19 + sectorSize, extents: 3},
		{name: "symlink", links: []int64{7}, inlineFiles: 1, inlineBytes: 8},
		{
			name: "mixed", files: []int64{10, 20, 4096, 0}, links: []int64{3},
			inlineFiles: 3, inlineBytes: 10 + 20 + 4, dataBytes: 4096, extents: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u usage
			var content int64
			for _, f := range tt.files {
				u.addFile(f)
				content += f
			}
			for _, l := range tt.links {
				u.addSymlink(l)
			}
			if u.inlineFiles != tt.inlineFiles || u.inlineBytes != tt.inlineBytes ||
				u.dataBytes != tt.dataBytes || u.extents != tt.extents || u.contentBytes != content {
				t.Errorf("usage = %+v; want inline %d files/%d bytes, data %d bytes in %d extents, content %d",
					u, tt.inlineFiles, tt.inlineBytes, tt.dataBytes, tt.extents, content)
			}
		})
	}
}

func TestImageSize(t *testing.T) {
	small := usage{inodes: 10, names: 9, nameBytes: 90}
	var big usage
	big.inodes, big.names, big.nameBytes = 2001, 2000, 20000
	for range 1000 {
		big.addFile(300 << 10)
	}
	for range 1000 {
		big.addFile(1000)
	}

	tests := []struct {
		name string
		u    usage
		free int64
		// wantFree is the free space the size must include above the estimate.
		wantFree int64
	}{
		{"empty tree, no free space", usage{inodes: 1}, -1, 0},
		{"small tree, default free space", small, 0, DefaultFreeSpace},
		{"small tree, 1 byte free", small, 1, 1},
		{"big tree, no free space", big, -1, 0},
		{"big tree, default free space", big, 0, DefaultFreeSpace},
		{"big tree, 1 GiB free", big, 1 << 30, 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := imageSize(tt.u, tt.free)
			if got%sizeAlign != 0 {
				t.Errorf("size %d is not a multiple of %d", got, sizeAlign)
			}
			if got < MinImageSize {
				t.Errorf("size %d is below the mkfs.btrfs minimum %d", got, MinImageSize)
			}
			need := tt.u.estimate() + tt.wantFree
			if got < need {
				t.Errorf("size %d < estimate %d + free space %d", got, tt.u.estimate(), tt.wantFree)
			}
			if got >= max(need, MinImageSize)+sizeAlign {
				t.Errorf("size %d is more than one alignment unit above max(%d, min %d)", got, need, MinImageSize)
			}
		})
	}

	// The estimate covers the data itself and grows with every kind of item.
	if e := big.estimate(); e < big.dataBytes+big.inlineBytes {
		t.Errorf("estimate %d below content %d", e, big.dataBytes+big.inlineBytes)
	}
	base := small.estimate()
	for name, grow := range map[string]func(u *usage){
		"inode":  func(u *usage) { u.inodes++ },
		"name":   func(u *usage) { u.names++; u.nameBytes += 10 },
		"xattr":  func(u *usage) { u.xattrs++; u.xattrBytes += 40 },
		"inline": func(u *usage) { u.addFile(100) },
		"data":   func(u *usage) { u.addFile(1 << 20) },
	} {
		u := small
		grow(&u)
		if u.estimate() <= base {
			t.Errorf("one more %s: estimate %d, not above %d", name, u.estimate(), base)
		}
	}
}
