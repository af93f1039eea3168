package initrd

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// fakeVmlinux is compressible data that starts like an ELF file.
func fakeVmlinux(n int) []byte {
	r := rand.New(rand.NewSource(1))
	b := append([]byte{}, elfMagic...)
	words := []string{"vmlinux ", "virtio ", "kernel ", "\x00\x00\x00\x00", "PVH "}
	for len(b) < n {
		b = append(b, words[r.Intn(len(words))]...)
		b = append(b, byte(r.Intn(256)))
	}
	return b[:n]
}

// compressWith runs data through the compressing writer newWriter makes.
func compressWith[W io.WriteCloser](t *testing.T, data []byte, newWriter func(io.Writer) (W, error)) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := newWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compressXZ(t *testing.T, data []byte) []byte { return compressWith(t, data, xz.NewWriter) }

func compressGzip(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// compressZstd compresses with the zstd encoder of the library the decoder
// uses: independent of the zstd program, not of the library.
func compressZstd(t *testing.T, data []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// compressLZ4Legacy writes an LZ4 legacy stream (8 MiB blocks) with the
// library whose block decoder decodeLZ4Legacy uses.
func compressLZ4Legacy(t *testing.T, data []byte) []byte {
	return compressWith(t, data, func(w io.Writer) (*lz4.Writer, error) {
		zw := lz4.NewWriter(w)
		return zw, zw.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4.Level9))
	})
}

// debianPackage names the Debian package of each program compressCmd runs.
var debianPackage = map[string]string{"xz": "xz-utils", "zstd": "zstd", "lz4": "lz4"}

// compressCmd compresses with an installed tool, or skips.
func compressCmd(t *testing.T, data []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs the %s program (Debian package %s): %v", name, debianPackage[name], err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, stderr.String())
	}
	return out
}

// fakeBzImage lays out a kernel image: setup sectors with a boot protocol
// 2.15 header (or none), then junk holding false magics, the payload, the
// appended uncompressed size and more junk.
func fakeBzImage(payload []byte, rawSize int, header bool) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512)
	junk := []byte("junk\xfd7zXZ\x00not xz\x1f\x8b\x08\x00not gzip\x28\xb5\x2f\xfd\x02\x21\x4c\x18....")
	pm := append(append([]byte{}, junk...), payload...)
	pm = binary.LittleEndian.AppendUint32(pm, uint32(rawSize))
	if header {
		img[0x1f1] = setupSects
		copy(img[0x202:], "HdrS")
		binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
		binary.LittleEndian.PutUint32(img[0x248:], uint32(len(junk)))
		binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)+4))
	}
	img = append(img, pm...)
	return append(img, "trailing junk after the payload"...)
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name()[0] == '.' {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestExtractVmlinux(t *testing.T) {
	raw := fakeVmlinux(300 << 10)
	formats := []struct {
		name     string
		compress func(t *testing.T) []byte
	}{
		{"xz", func(t *testing.T) []byte { return compressXZ(t, raw) }},
		{"xz-kernel-style", func(t *testing.T) []byte {
			// What the kernel build runs: CRC32 check, x86 BCJ filter.
			return compressCmd(t, raw, "xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c")
		}},
		{"gzip", func(t *testing.T) []byte { return compressGzip(t, raw) }},
		{"zstd", func(t *testing.T) []byte { return compressCmd(t, raw, "zstd", "-q", "-c", "-19") }},
		{"zstd-go", func(t *testing.T) []byte { return compressZstd(t, raw) }},
		{"lz4-legacy", func(t *testing.T) []byte { return compressCmd(t, raw, "lz4", "-q", "-l", "-c") }},
		{"lz4-legacy-go", func(t *testing.T) []byte { return compressLZ4Legacy(t, raw) }},
	}
	for _, f := range formats {
		for _, header := range []bool{true, false} {
			name := f.name + "/scan"
			if header {
				name = f.name + "/header"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "vmlinuz")
				out := filepath.Join(dir, "vmlinux")
				if err := os.WriteFile(in, fakeBzImage(f.compress(t), len(raw), header), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := ExtractVmlinux(in, out); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, raw) {
					t.Errorf("extracted %d bytes, want the %d of the payload", len(got), len(raw))
				}
				if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
					t.Errorf("mode %v, want 0644", fi.Mode())
				}
				noTempFiles(t, dir)
			})
		}
	}
}

func TestExtractVmlinuxErrors(t *testing.T) {
	tests := []struct {
		name string
		img  []byte
	}{
		{"no magic", []byte("MZ nothing compressed in here")},
		{"not ELF", fakeBzImage(compressXZ(t, []byte("#!/bin/sh\necho not a kernel\n")), 30, true)},
		{"truncated", fakeBzImage(compressXZ(t, fakeVmlinux(1<<20))[:5000], 1<<20, false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "vmlinuz")
			out := filepath.Join(dir, "vmlinux")
			os.WriteFile(in, tt.img, 0o644)
			err := ExtractVmlinux(in, out)
			if !errors.Is(err, ErrNoPayload) {
				t.Fatalf("got %v, want ErrNoPayload", err)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists after failure", out)
			}
			noTempFiles(t, dir)
		})
	}
	if err := ExtractVmlinux(filepath.Join(t.TempDir(), "missing"), filepath.Join(t.TempDir(), "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing image: got %v", err)
	}
}

func TestVmlinuxCache(t *testing.T) {
	dir := t.TempDir()
	k := &Kernel{Release: "6.1.0-1-amd64", Vmlinuz: filepath.Join(dir, "vmlinuz")}
	raw := fakeVmlinux(64 << 10)
	os.WriteFile(k.Vmlinuz, fakeBzImage(compressXZ(t, raw), len(raw), true), 0o644)
	cache := filepath.Join(dir, "cache")
	p1, err := Vmlinux(k, cache)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p1); !bytes.Equal(got, raw) {
		t.Fatal("first extraction differs from the payload")
	}
	// A cache hit must not extract again: mark the cached file.
	os.WriteFile(p1, []byte("cached"), 0o644)
	p2, err := Vmlinux(k, cache)
	if err != nil || p2 != p1 {
		t.Fatalf("second call: %q, %v; want %q", p2, err, p1)
	}
	if got, _ := os.ReadFile(p2); string(got) != "cached" {
		t.Error("cache hit extracted again")
	}
	// A start finds the file by the stat stamp of the vmlinuz, not by a
	// hash of it: point the stamp elsewhere.
	stamps, _ := filepath.Glob(filepath.Join(cache, vmlinuxStampPrefix+"*"))
	if len(stamps) != 1 {
		t.Fatalf("stamps %q, want one", stamps)
	}
	marked := filepath.Join(cache, "vmlinux-"+k.Release+"-marked")
	os.WriteFile(marked, []byte("marked"), 0o644)
	os.WriteFile(stamps[0], []byte(filepath.Base(marked)), 0o644)
	if p, err := Vmlinux(k, cache); err != nil || p != marked {
		t.Fatalf("with the stamp naming %q: %q, %v", marked, p, err)
	}
	os.WriteFile(stamps[0], []byte(filepath.Base(p1)), 0o644)
	// Another kernel image of the same release: another file.
	raw2 := fakeVmlinux(65 << 10)
	os.WriteFile(k.Vmlinuz, fakeBzImage(compressXZ(t, raw2), len(raw2), true), 0o644)
	p3, err := Vmlinux(k, cache)
	if err != nil || p3 == p1 {
		t.Fatalf("new image: %q, %v; want a path other than %q", p3, err, p1)
	}
	if got, _ := os.ReadFile(p3); !bytes.Equal(got, raw2) {
		t.Error("new image: wrong contents")
	}
}

// TestDecodeLZ4Legacy covers the framing: several 8 MiB blocks, a second
// stream concatenated to the first, the kernel's appended size, trailing
// data, and a corrupt block.
func TestDecodeLZ4Legacy(t *testing.T) {
	raw := fakeVmlinux(lz4LegacyBlock + 300<<10)
	comp := compressLZ4Legacy(t, raw)
	tail := fakeVmlinux(1000)
	two := append(append([]byte{}, comp...), compressLZ4Legacy(t, tail)...)
	want2 := append(append([]byte{}, raw...), tail...)
	for _, tt := range []struct {
		name string
		src  []byte
		want []byte
	}{
		{"blocks", comp, raw},
		{"appended size", binary.LittleEndian.AppendUint32(append([]byte{}, comp...), uint32(len(raw))), raw},
		{"concatenated", two, want2},
		{"trailing data", append(append([]byte{}, two...), "\x10\x00\x00\x00trailing"...), want2},
	} {
		var got bytes.Buffer
		if err := decodeLZ4Legacy(&got, tt.src); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		} else if !bytes.Equal(got.Bytes(), tt.want) {
			t.Errorf("%s: decoded %d bytes that differ from the %d compressed", tt.name, got.Len(), len(tt.want))
		}
	}
	if n := binary.LittleEndian.Uint32(comp[4:]); 8+int(n) >= len(comp) {
		t.Fatalf("first block of %d bytes is the whole stream: want several blocks", n)
	}
	bad := append([]byte{}, comp...)
	copy(bad[8:], bytes.Repeat([]byte{0xff}, 64)) // literal lengths that run past the block
	if err := decodeLZ4Legacy(io.Discard, bad); err == nil {
		t.Error("corrupt block decoded without error")
	}
}

// TestDecodeZstd checks that a kernel payload stops after its frame and a
// module file decodes all its frames.
func TestDecodeZstd(t *testing.T) {
	a, b := fakeVmlinux(100<<10), fakeVmlinux(3000)
	fa := compressZstd(t, a)
	both := append(append([]byte{}, fa...), compressZstd(t, b, zstd.WithEncoderCRC(false))...)
	var got bytes.Buffer
	if err := decodeZstd(&got, append(append([]byte{}, both...), 1, 2, 3, 4)); err != nil || !bytes.Equal(got.Bytes(), a) {
		t.Errorf("first frame: %d bytes, %v; want the %d of the first frame", got.Len(), err, len(a))
	}
	got.Reset()
	if err := decodeZstdFrames(&got, both); err != nil || !bytes.Equal(got.Bytes(), append(append([]byte{}, a...), b...)) {
		t.Errorf("all frames: %d bytes, %v; want %d", got.Len(), err, len(a)+len(b))
	}
	bad := append([]byte{}, fa...)
	bad[len(bad)/2] ^= 0x10
	if err := decodeZstd(io.Discard, bad); err == nil {
		t.Error("corrupt frame decoded without error")
	}
	if err := decodeZstdFrames(io.Discard, append(append([]byte{}, fa...), "garbage"...)); err == nil {
		t.Error("module file with trailing garbage decoded without error")
	}
}

func TestZstdFrameLen(t *testing.T) {
	raw := fakeVmlinux(200 << 10)
	frames := map[string]func(t *testing.T) []byte{
		"go":                func(t *testing.T) []byte { return compressZstd(t, raw) },
		"go no check":       func(t *testing.T) []byte { return compressZstd(t, raw, zstd.WithEncoderCRC(false)) },
		"go single segment": func(t *testing.T) []byte { return compressZstd(t, raw, zstd.WithSingleSegment(true)) },
		"go stream, no size": func(t *testing.T) []byte {
			return compressWith(t, raw, func(w io.Writer) (*zstd.Encoder, error) { return zstd.NewWriter(w) })
		},
	}
	for _, args := range [][]string{{"-q", "-c"}, {"-q", "-c", "--no-check"}, {"-q", "-c", "--no-content-size"}} {
		frames[fmt.Sprint("zstd", args)] = func(t *testing.T) []byte { return compressCmd(t, raw, "zstd", args...) }
	}
	for name, compress := range frames {
		t.Run(name, func(t *testing.T) {
			frame := compress(t)
			n, err := zstdFrameLen(append(append([]byte{}, frame...), "trailing"...))
			if err != nil || n != len(frame) {
				t.Errorf("got %d, %v; want %d", n, err, len(frame))
			}
			if _, err := zstdFrameLen(frame[:len(frame)/2]); err == nil {
				t.Error("truncated frame accepted")
			}
		})
	}
}

func TestVmlinuxRealKernel(t *testing.T) {
	k := realKernel(t)
	cache := t.TempDir()
	start := time.Now()
	p, err := Vmlinux(k, cache)
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	start = time.Now()
	if p2, err := Vmlinux(k, cache); err != nil || p2 != p {
		t.Fatalf("cached: %q, %v", p2, err)
	}
	fi, _ := os.Stat(p)
	t.Logf("vmlinux %s: %d bytes, extraction %v, cache hit %v", filepath.Base(p), fi.Size(), cold, time.Since(start))
	ef, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v", ef.Machine)
	}
	if !hasPVHNote(t, ef) {
		t.Error("no XEN_ELFNOTE_PHYS32_ENTRY note: qemu and cloud-hypervisor cannot boot it through PVH")
	}
	// Its loadable segments end at a non-zero byte in the file: the zeros
	// of .bss and .init.scratch are left to the loader (trimZeroTails).
	var inFile, inMemory uint64
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		inFile, inMemory = inFile+p.Filesz, inMemory+p.Memsz
		last := make([]byte, 1)
		if _, err := p.ReadAt(last, int64(p.Filesz)-1); err != nil {
			t.Fatal(err)
		}
		if last[0] == 0 {
			t.Errorf("segment at %#x: its %d bytes in the file end with a zero", p.Paddr, p.Filesz)
		}
	}
	t.Logf("loadable: %d MB in the file, %d MB in memory", inFile>>20, inMemory>>20)
}

// hasPVHNote looks for the Xen PHYS32_ENTRY (type 18) ELF note that marks
// a PVH entry point.
func hasPVHNote(t *testing.T, ef *elf.File) bool {
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		for len(data) >= 12 {
			nsz := int(binary.LittleEndian.Uint32(data))
			dsz := int(binary.LittleEndian.Uint32(data[4:]))
			typ := binary.LittleEndian.Uint32(data[8:])
			name := data[12:min(len(data), 12+nsz)]
			if string(bytes.TrimRight(name, "\x00")) == "Xen" && typ == 18 {
				return true
			}
			adv := 12 + (nsz+3)&^3 + (dsz+3)&^3
			if adv > len(data) {
				break
			}
			data = data[adv:]
		}
	}
	return false
}

// TestDecodeXZFilters decodes real x86 machine code (this test binary)
// compressed by xz with the x86 BCJ filter, as the kernel build does, with
// each check type.
func TestDecodeXZFilters(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[:min(len(raw), 1536<<10)]
	for _, args := range [][]string{
		{"--check=crc32", "--x86", "--lzma2=preset=1,dict=32MiB"},
		{"--check=crc64", "--x86=start=4096", "--lzma2=preset=1"},
		{"--check=sha256", "--lzma2=preset=1"},
		{"--check=none", "--x86", "--lzma2=preset=1", "--block-size=512KiB"},
	} {
		t.Run(args[0]+args[1], func(t *testing.T) {
			comp := compressCmd(t, raw, "xz", append([]string{"-c", "-T1"}, args...)...)
			var got bytes.Buffer
			if err := decodeXZ(&got, append(comp, 1, 2, 3, 4)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), raw) {
				t.Errorf("decoded %d bytes that differ from the %d compressed", got.Len(), len(raw))
			}
			// Any flipped bit in the data must fail the block check or
			// the LZMA2 decoder.
			bad := append([]byte{}, comp...)
			bad[len(bad)/2] ^= 0x10
			if err := decodeXZ(&bytes.Buffer{}, bad); err == nil && args[0] != "--check=none" {
				t.Error("corrupted stream decoded without error")
			}
		})
	}
}

// TestDecodeXZCommitted decodes testdata/x86like.xz, made once with
// `xz --check=crc64 --x86 --lzma2=preset=1` from x86Like(16 KiB): the BCJ
// filter is checked on every machine, with or without the xz program.
func TestDecodeXZCommitted(t *testing.T) {
	comp, err := os.ReadFile(filepath.Join("testdata", "x86like.xz"))
	if err != nil {
		t.Fatal(err)
	}
	want := x86Like(16 << 10)
	if sum := sha256.Sum256(want); hex.EncodeToString(sum[:]) != "d4236028fffde25b5c521949b445070f79f09bbf2c6cbc3f9c0dd020bc255759" {
		t.Fatalf("x86Like changed (sha256 %x): regenerate testdata/x86like.xz", sum)
	}
	var got bytes.Buffer
	if err := decodeXZ(&got, comp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("decoded %d bytes that differ from the %d compressed", got.Len(), len(want))
	}
}

// x86Like is n bytes of deterministic filler with relative calls and jumps
// (E8/E9 and a 32-bit offset whose high byte is 00 or FF) for the x86 BCJ
// filter to convert.
func x86Like(n int) []byte {
	b := make([]byte, 0, n)
	x := uint32(2463534242)
	next := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	for len(b) < n {
		switch r := next(); {
		case r%5 == 0:
			op := byte(0xe8)
			if r%2 == 0 {
				op = 0xe9
			}
			off := next() % 0x20000
			hi := byte(0)
			if r%3 == 0 {
				off, hi = -off, 0xff
			}
			b = append(b, op, byte(off), byte(off>>8), byte(off>>16), hi)
		default:
			b = append(b, byte(r), byte(r>>8)&0x7f)
		}
	}
	return b[:n]
}
