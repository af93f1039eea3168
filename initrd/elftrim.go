package initrd

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// ELF64 header and program header fields trimZeroTails reads and writes
// (System V ABI, "ELF Header" and "Program Header").
const (
	elfClass64      = 2    // e_ident[EI_CLASS]
	elfHeader64Size = 0x40 // sizeof(Elf64_Ehdr)
	elfPhdr64Size   = 0x38 // sizeof(Elf64_Phdr)
	ptLoad          = 1
)

// trimZeroTails lowers the file size (p_filesz) of each PT_LOAD segment of
// the ELF64 file f so that it ends at the segment's last non-zero byte,
// leaving its memory size and every byte of the file as they are.
//
// The System V ABI: "If the segment's memory size (p_memsz) is larger than
// the file size (p_filesz), the 'extra' bytes are defined to hold the value
// 0 and to follow the segment's initialized area." A loader therefore puts
// the same bytes in memory either way, but no longer copies them from the
// file: an x86 vmlinux's last segment carries .bss, .brk and .init.scratch
// as 24 MB of zeros in the file (.init.scratch, PROGBITS, follows the NOBITS
// .bss, so the linker writes the hole), which qemu copied into the guest's
// RAM at every cold boot: qemu's exec until its monitor answered went from
// 147-156 to 112-136 ms on our TCG host (docs/boot-budget.md).
//
// A file that is not a well-formed ELF64 is left alone: whatever loads it
// reports what is wrong with it. Only I/O errors are returned.
func trimZeroTails(f *os.File) error {
	var eh [elfHeader64Size]byte
	if _, err := f.ReadAt(eh[:], 0); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil // too short to be ELF64
		}
		return fmt.Errorf("reading the ELF header of %q: %w", f.Name(), err)
	}
	if string(eh[:4]) != string(elfMagic) || eh[4] != elfClass64 {
		return nil
	}
	var bo binary.ByteOrder
	switch eh[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("trimming the segments of %q: %w", f.Name(), err)
	}
	size := uint64(fi.Size())
	phoff, phentsize, phnum := bo.Uint64(eh[0x20:]), uint64(bo.Uint16(eh[0x36:])), uint64(bo.Uint16(eh[0x38:]))
	if phentsize < elfPhdr64Size || phoff > size || phnum*phentsize > size-phoff {
		return nil
	}
	for i := uint64(0); i < phnum; i++ {
		at := int64(phoff + i*phentsize)
		var ph [elfPhdr64Size]byte
		if _, err := f.ReadAt(ph[:], at); err != nil {
			return fmt.Errorf("reading program header %d of %q: %w", i, f.Name(), err)
		}
		off, filesz, memsz := bo.Uint64(ph[0x08:]), bo.Uint64(ph[0x20:]), bo.Uint64(ph[0x28:])
		if bo.Uint32(ph[0:]) != ptLoad || filesz > memsz || off > size || filesz > size-off {
			continue
		}
		end, err := lastNonZero(f, int64(off), int64(filesz))
		if err != nil {
			return err
		}
		if uint64(end) == filesz {
			continue
		}
		bo.PutUint64(ph[0x20:], uint64(end))
		if _, err := f.WriteAt(ph[0x20:0x28], at+0x20); err != nil {
			return fmt.Errorf("writing program header %d of %q: %w", i, f.Name(), err)
		}
	}
	return nil
}

// lastNonZero returns the length of the n bytes at off in f without their
// trailing zeros, reading them from the end.
func lastNonZero(f *os.File, off, n int64) (int64, error) {
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		b := buf[:k]
		if _, err := f.ReadAt(b, off+n-k); err != nil {
			return 0, fmt.Errorf("reading %q at %d: %w", f.Name(), off+n-k, err)
		}
		for j := len(b) - 1; j >= 0; j-- {
			if b[j] != 0 {
				return n - k + int64(j) + 1, nil
			}
		}
		n -= k
	}
	return 0, nil
}
