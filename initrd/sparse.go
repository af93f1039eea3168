package initrd

import (
	"fmt"
	"os"
)

// sparseBlock is the unit sparseWriter leaves out when it is all zeros:
// the page size, the block size of the filesystems the cache lives on.
const sparseBlock = 4096

// sparseWriter writes to f from offset 0, leaving every sparseBlock-aligned
// block of zeros unwritten (a hole, on filesystems that make them), and
// sets f's size to all it was given at finish. An extracted vmlinux is a
// third zeros (its .bss, .brk and .init.scratch in the file, and the gaps
// its 2 MB-aligned segments leave): 65 MB in the file, 31 MB on ext4.
type sparseWriter struct {
	f   *os.File
	off int64  // where buf starts in f
	buf []byte // not written yet: flushed when it reaches its capacity
}

func newSparseWriter(f *os.File) *sparseWriter {
	return &sparseWriter{f: f, buf: make([]byte, 0, 1<<20)}
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// flush writes buf without its blocks of zeros. buf holds whole blocks
// (its capacity is a multiple of sparseBlock) but at the end of the file.
func (w *sparseWriter) flush() error {
	n := len(w.buf)
	for at := 0; at < n; {
		end := min(at+sparseBlock, n)
		if !allZero(w.buf[at:end]) {
			// Join the next blocks that are not zeros into one write.
			for end < n && !allZero(w.buf[end:min(end+sparseBlock, n)]) {
				end = min(end+sparseBlock, n)
			}
			if _, err := w.f.WriteAt(w.buf[at:end], w.off+int64(at)); err != nil {
				return fmt.Errorf("writing %q: %w", w.f.Name(), err)
			}
		}
		at = end
	}
	w.off += int64(n)
	w.buf = w.buf[:0]
	return nil
}

// finish writes what is left and gives the file its whole size (a hole
// at the end is not written either).
func (w *sparseWriter) finish() error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Truncate(w.off); err != nil {
		return fmt.Errorf("setting the size of %q: %w", w.f.Name(), err)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
