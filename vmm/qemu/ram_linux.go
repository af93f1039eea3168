package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ramPage is the unit copyRAM skips when it is all zeros: what a fresh
// memfd already reads as.
const ramPage = 4096

// copyRAM copies the guest RAM file src (a template's, sparse) into a new
// memfd of size bytes and returns it: a virtiofs clone's RAM, which must
// be shared with virtiofsd and so cannot map the template's file
// copy-on-write. Only src's data extents are read, and pages of zeros in
// them are left as holes, so the copy holds what the template's guest
// wrote and no more. The memfd has no name in any filesystem: it is freed
// when the last process mapping it (qemu, virtiofsd) exits.
func copyRAM(src string, size int64) (_ *os.File, err error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("copying the template's RAM: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, fmt.Errorf("copying the template's RAM: %w", err)
	}
	if fi.Size() > size {
		return nil, fmt.Errorf("copying the template's RAM %q: %d bytes, more than the vm's %d", src, fi.Size(), size)
	}
	fd, err := unix.MemfdCreate("initos-clone-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("copying the template's RAM: memfd_create: %w", err)
	}
	out := os.NewFile(uintptr(fd), "initos-clone-ram")
	defer func() {
		if err != nil {
			out.Close()
		}
	}()
	if err := out.Truncate(size); err != nil {
		return nil, fmt.Errorf("copying the template's RAM: sizing the copy: %w", err)
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, ramPage)
	for off := int64(0); off < fi.Size(); {
		start, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only holes past off
		}
		if err != nil {
			return nil, fmt.Errorf("copying the template's RAM %q: seeking data: %w", src, err)
		}
		end, err := unix.Seek(int(in.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("copying the template's RAM %q: seeking a hole: %w", src, err)
		}
		for pos := start; pos < end; {
			n, err := in.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("copying the template's RAM %q: %w", src, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("copying the template's RAM %q: %w at %d", src, io.ErrUnexpectedEOF, pos)
			}
			// Each run of pages that are not all zeros is one write.
			run := -1
			for p := 0; ; p += ramPage {
				if p < n && !bytes.Equal(buf[p:min(p+ramPage, n)], zero[:min(ramPage, n-p)]) {
					if run < 0 {
						run = p
					}
					continue
				}
				if run >= 0 {
					if _, err := out.WriteAt(buf[run:min(p, n)], pos+int64(run)); err != nil {
						return nil, fmt.Errorf("copying the template's RAM: writing the copy: %w", err)
					}
					run = -1
				}
				if p >= n {
					break
				}
			}
			pos += int64(n)
		}
		off = end
	}
	return out, nil
}
