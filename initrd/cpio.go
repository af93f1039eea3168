package initrd

import (
	"fmt"
	"io"
	"sort"
)

// File type bits of cpio modes (the same as st_mode's).
const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
	// modeSymlink: the entry's data is the link's target.
	modeSymlink = 0o120000
)

// cpioEntry is one member of a newc archive.
type cpioEntry struct {
	name         string // without a leading "/"; "." is the root
	mode         uint32 // type and permission bits
	data         []byte
	rmajor, rmin uint32 // device number of character devices
}

// writeCpio writes entries as an uncompressed "newc" (070701) archive, the
// format the kernel unpacks into its rootfs: sorted by name, uid/gid 0,
// mtime 0, inode numbers counted from 1 in that order, then TRAILER!!!.
// The same entries always give the same bytes.
func writeCpio(w io.Writer, entries []cpioEntry) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].name == sorted[i-1].name {
			return fmt.Errorf("writing cpio: entry %q twice", sorted[i].name)
		}
	}
	cw := &cpioWriter{w: w}
	for i, e := range sorted {
		nlink := uint32(1)
		if e.mode&0o170000 == modeDir {
			nlink = 2
		}
		cw.entry(uint32(i+1), e.mode, nlink, e.rmajor, e.rmin, e.name, e.data)
	}
	cw.entry(0, 0, 1, 0, 0, "TRAILER!!!", nil)
	if cw.err != nil {
		return fmt.Errorf("writing cpio: %w", cw.err)
	}
	return nil
}

type cpioWriter struct {
	w   io.Writer
	n   int64 // bytes written, for the 4-byte alignment
	err error
}

func (cw *cpioWriter) write(p []byte) {
	if cw.err != nil {
		return
	}
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	cw.err = err
}

func (cw *cpioWriter) pad() {
	if r := cw.n % 4; r != 0 {
		cw.write(make([]byte, 4-r))
	}
}

// entry writes a 110-byte header (magic and 13 eight-digit hex fields),
// the NUL-terminated name and the data, each padded to 4 bytes.
func (cw *cpioWriter) entry(ino, mode, nlink, rmajor, rminor uint32, name string, data []byte) {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	cw.write([]byte(hdr))
	cw.write(append([]byte(name), 0))
	cw.pad()
	cw.write(data)
	cw.pad()
}
