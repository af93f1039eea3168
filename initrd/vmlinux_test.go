package initrd

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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

func compressXZ(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compressGzip(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// compressCmd compresses with an installed tool, or skips.
func compressCmd(t *testing.T, data []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("needs the %s program: %v", name, err)
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
		{"lz4-legacy", func(t *testing.T) []byte { return compressCmd(t, raw, "lz4", "-q", "-l", "-c") }},
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

func TestLZ4Block(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
		bad  bool
	}{
		{"literals only", []byte{0x50, 'h', 'e', 'l', 'l', 'o'}, "hello", false},
		{"match", []byte{0x32, 'a', 'b', 'c', 3, 0, 0x10, 'x'}, "abcabcabcx", false},
		{"overlapping match", []byte{0x11, 'a', 1, 0, 0x00}, "aaaaaa", false},
		{"long literal", append([]byte{0xf0, 2}, bytes.Repeat([]byte{'z'}, 17)...), "zzzzzzzzzzzzzzzzz", false},
		{"offset zero", []byte{0x10, 'a', 0, 0, 0x00}, "", true},
		{"offset too far", []byte{0x10, 'a', 2, 0, 0x00}, "", true},
		{"truncated", []byte{0x50, 'h', 'e'}, "", true},
		{"ends in a match", []byte{0x10, 'a', 1, 0}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lz4Block(nil, tt.in, 1<<20)
			if tt.bad {
				if err == nil {
					t.Errorf("got %q, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestZstdFrameLen(t *testing.T) {
	raw := fakeVmlinux(200 << 10)
	for _, args := range [][]string{{"-q", "-c"}, {"-q", "-c", "--no-check"}, {"-q", "-c", "--no-content-size"}} {
		frame := compressCmd(t, raw, "zstd", args...)
		n, err := zstdFrameLen(append(append([]byte{}, frame...), "trailing"...))
		if err != nil || n != len(frame) {
			t.Errorf("zstd %v: got %d, %v; want %d", args, n, err, len(frame))
		}
		if _, err := zstdFrameLen(frame[:len(frame)/2]); err == nil {
			t.Errorf("zstd %v: truncated frame accepted", args)
		}
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
