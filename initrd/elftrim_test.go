package initrd

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// seg is one program header of a test ELF file and its file bytes.
type seg struct {
	typ   uint32
	data  []byte
	memsz uint64 // len(data) when 0
}

// elf64 lays out an ELF64 file of bo: its header, the program headers of
// segs, then each segment's bytes.
func elf64(bo binary.ByteOrder, segs ...seg) []byte {
	b := make([]byte, elfHeader64Size+len(segs)*elfPhdr64Size)
	copy(b, elfMagic)
	b[4] = elfClass64
	b[5] = 1
	if bo == binary.BigEndian {
		b[5] = 2
	}
	b[6] = 1 // EV_CURRENT
	bo.PutUint16(b[0x10:], uint16(elf.ET_EXEC))
	bo.PutUint16(b[0x12:], uint16(elf.EM_X86_64))
	bo.PutUint32(b[0x14:], 1)
	bo.PutUint64(b[0x20:], elfHeader64Size)
	bo.PutUint16(b[0x34:], elfHeader64Size)
	bo.PutUint16(b[0x36:], elfPhdr64Size)
	bo.PutUint16(b[0x38:], uint16(len(segs)))
	for i, s := range segs {
		ph := b[elfHeader64Size+i*elfPhdr64Size:]
		memsz := s.memsz
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		bo.PutUint32(ph[0:], s.typ)
		bo.PutUint64(ph[0x08:], uint64(len(b)))
		bo.PutUint64(ph[0x10:], 0x1000000*uint64(i+1))
		bo.PutUint64(ph[0x18:], 0x1000000*uint64(i+1))
		bo.PutUint64(ph[0x20:], uint64(len(s.data)))
		bo.PutUint64(ph[0x28:], memsz)
		b = append(b, s.data...)
	}
	return b
}

// filesizes reads the file and memory sizes of each program header of
// the ELF file in b.
func filesizes(t *testing.T, b []byte) (file, mem []uint64) {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the trimmed file is not ELF any more: %v", err)
	}
	for _, p := range ef.Progs {
		file = append(file, p.Filesz)
		mem = append(mem, p.Memsz)
	}
	return file, mem
}

// trimmed runs trimZeroTails on a file of the bytes in and returns the
// file's bytes after it.
func trimmed(t *testing.T, in []byte) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, in, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := trimZeroTails(f); err != nil {
		t.Fatalf("trimming: %v", err)
	}
	out, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTrimZeroTails(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	text := []byte("\x0f\x05 kernel text \x90")
	tests := []struct {
		name     string
		bo       binary.ByteOrder
		segs     []seg
		wantFile []uint64
	}{
		{"zero tail", binary.LittleEndian, []seg{{ptLoad, cat(text, zeros(100)), 4096}}, []uint64{uint64(len(text))}},
		{"zeros inside kept", binary.LittleEndian, []seg{{ptLoad, cat(text, zeros(9), text, zeros(3)), 0}}, []uint64{uint64(2*len(text) + 9)}},
		{"no zero tail", binary.LittleEndian, []seg{{ptLoad, text, 0}}, []uint64{uint64(len(text))}},
		{"all zeros", binary.LittleEndian, []seg{{ptLoad, zeros(5000), 8192}}, []uint64{0}},
		// Longer than lastNonZero's buffer: the scan goes back over it.
		{"tail past a read", binary.LittleEndian, []seg{{ptLoad, cat(text, zeros(1<<20+17)), 0}}, []uint64{uint64(len(text))}},
		{"each load segment", binary.LittleEndian, []seg{
			{ptLoad, cat(text, zeros(64)), 0},
			{uint32(elf.PT_NOTE), cat(text, zeros(8)), 0},
			{ptLoad, cat(text, text, zeros(4096)), 0},
		}, []uint64{uint64(len(text)), uint64(len(text) + 8), uint64(2 * len(text))}},
		// Not a segment a loader would take: left for it to refuse.
		{"file size over memory size", binary.LittleEndian, []seg{{ptLoad, cat(text, zeros(64)), 8}}, []uint64{uint64(len(text) + 64)}},
		{"big endian", binary.BigEndian, []seg{{ptLoad, cat(text, zeros(30)), 0}}, []uint64{uint64(len(text))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := elf64(tt.bo, tt.segs...)
			out := trimmed(t, in)
			gotFile, gotMem := filesizes(t, out)
			_, wantMem := filesizes(t, in)
			if !slices.Equal(gotFile, tt.wantFile) {
				t.Errorf("file sizes %v, want %v", gotFile, tt.wantFile)
			}
			if !slices.Equal(gotMem, wantMem) {
				t.Errorf("memory sizes %v, want them unchanged: %v", gotMem, wantMem)
			}
			// Only the program headers' file sizes change.
			hdrs := elfHeader64Size + len(tt.segs)*elfPhdr64Size
			if len(out) != len(in) || !bytes.Equal(out[:elfHeader64Size], in[:elfHeader64Size]) || !bytes.Equal(out[hdrs:], in[hdrs:]) {
				t.Error("bytes other than the program headers changed")
			}
		})
	}
}

// TestTrimZeroTailsLeavesOthers: what is not a well-formed ELF64 file is
// left as it is, without an error.
func TestTrimZeroTailsLeavesOthers(t *testing.T) {
	good := elf64(binary.LittleEndian, seg{ptLoad, append([]byte("text"), make([]byte, 64)...), 0})
	elf32 := bytes.Clone(good)
	elf32[4] = 1
	badOrder := bytes.Clone(good)
	badOrder[5] = 7
	phOutside := bytes.Clone(good)
	binary.LittleEndian.PutUint64(phOutside[0x20:], 1<<40)
	segOutside := bytes.Clone(good)
	binary.LittleEndian.PutUint64(segOutside[elfHeader64Size+0x08:], 1<<40)
	for name, b := range map[string][]byte{
		"empty":                 nil,
		"short":                 []byte("\x7fELF\x02"),
		"not ELF":               bytes.Repeat([]byte("MZ"), 64),
		"ELF32":                 elf32,
		"unknown byte order":    badOrder,
		"headers past the end":  phOutside,
		"segment past the end":  segOutside,
		"fake vmlinux of tests": fakeVmlinux(4096),
	} {
		t.Run(name, func(t *testing.T) {
			if got := trimmed(t, b); !bytes.Equal(got, b) {
				t.Error("changed")
			}
		})
	}
}
