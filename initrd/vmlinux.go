package initrd

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// compression is one format a bzImage payload may use.
type compression struct {
	name   string
	magic  []byte
	decode func(dst io.Writer, src []byte) error
}

// compressions lists the formats ExtractVmlinux recognises. bzip2 and lzma
// (legacy .lzma, no reliable magic) are not among them; Debian uses XZ.
var compressions = []compression{
	{"xz", xzStreamMagic, decodeXZ},
	{"gzip", []byte{0x1f, 0x8b, 0x08, 0x00}, decodeGzip},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, decodeZstd},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}, decodeLZ4Legacy},
}

var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// errNotELF stops a decoder as soon as its output turns out not to be ELF.
var errNotELF = errors.New("decompressed data is not an ELF file")

// candidate is a place in the image where a compressed vmlinux may start.
type candidate struct {
	offset int
	data   []byte // from offset to the end of the payload or the file
	c      *compression
}

// ExtractVmlinux writes the ELF vmlinux inside the bzImage vmlinuz to out.
//
// The payload is taken from the setup header's payload_offset/length when the
// image has one (boot protocol 2.08+), then from every place a known
// compression magic occurs, in file order, until one decompresses to data
// that starts with the ELF magic. Bytes after the compressed stream (the
// kernel build appends the uncompressed size) are ignored. out is written
// atomically.
func ExtractVmlinux(vmlinuz, out string) error {
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return fmt.Errorf("reading kernel image: %w", err)
	}
	cands := payloadCandidates(img)
	if len(cands) == 0 {
		return fmt.Errorf("extracting vmlinux from %q: no xz, gzip, zstd or lz4 stream in it: %w", vmlinuz, ErrNoPayload)
	}
	var tried []error
	return writeFileAtomicRaw(out, func(f *os.File) error {
		for _, c := range cands {
			// Start over: a candidate that failed half-way must not leave
			// its output in the file.
			if err := f.Truncate(0); err != nil {
				return fmt.Errorf("truncating %q: %w", f.Name(), err)
			}
			sw := newSparseWriter(f)
			ew := &elfCheckWriter{w: sw}
			err := c.c.decode(ew, c.data)
			if err == nil && len(ew.head) < len(elfMagic) {
				err = errNotELF
			}
			if err == nil {
				if err := sw.finish(); err != nil {
					return err
				}
				return trimZeroTails(f)
			}
			tried = append(tried, fmt.Errorf("%s at offset %d: %w", c.c.name, c.offset, err))
		}
		return fmt.Errorf("extracting vmlinux from %q: %w: %w", vmlinuz, ErrNoPayload, errors.Join(tried...))
	})
}

// payloadCandidates lists where a compressed vmlinux may start in img: the
// payload the setup header describes first, then every magic match.
func payloadCandidates(img []byte) []candidate {
	var cands []candidate
	seen := map[int]bool{}
	if off, n, ok := bzImagePayload(img); ok {
		for i := range compressions {
			c := &compressions[i]
			if bytes.HasPrefix(img[off:off+n], c.magic) {
				cands = append(cands, candidate{off, img[off : off+n], c})
				seen[off] = true
				break
			}
		}
	}
	var scanned []candidate
	for i := range compressions {
		c := &compressions[i]
		for from := 0; ; {
			j := bytes.Index(img[from:], c.magic)
			if j < 0 {
				break
			}
			off := from + j
			if !seen[off] {
				scanned = append(scanned, candidate{off, img[off:], c})
			}
			from = off + 1
		}
	}
	sort.SliceStable(scanned, func(i, j int) bool { return scanned[i].offset < scanned[j].offset })
	return append(cands, scanned...)
}

// bzImagePayload reads the x86 boot protocol setup header: the compressed
// payload starts payload_offset (0x248) bytes into the protected-mode code,
// which follows the (setup_sects+1) sectors of real-mode code, and is
// payload_length (0x24c) bytes long.
func bzImagePayload(img []byte) (off, n int, ok bool) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return 0, 0, false
	}
	if binary.LittleEndian.Uint16(img[0x206:]) < 0x208 {
		return 0, 0, false
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off = (setupSects+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	n = int(binary.LittleEndian.Uint32(img[0x24c:]))
	if n <= 0 || off < 0 || off+n > len(img) || off+n < off {
		return 0, 0, false
	}
	return off, n, true
}

// elfCheckWriter fails the first write that shows the data is not ELF, so a
// false magic match stops after its first block.
type elfCheckWriter struct {
	w    io.Writer
	head []byte
}

func (e *elfCheckWriter) Write(p []byte) (int, error) {
	if len(e.head) < len(elfMagic) {
		k := min(len(elfMagic)-len(e.head), len(p))
		e.head = append(e.head, p[:k]...)
		if !bytes.HasPrefix(elfMagic, e.head) {
			return 0, errNotELF
		}
	}
	return e.w.Write(p)
}

func decodeGzip(dst io.Writer, src []byte) error {
	r, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return err
	}
	r.Multistream(false)
	if _, err := io.Copy(dst, r); err != nil {
		return err
	}
	return r.Close()
}

// Vmlinux returns the ELF vmlinux of k, extracting it into cacheDir once.
//
// The file is named by the SHA-256 of the vmlinuz (and vmlinuxFormat),
// which, unlike size+mtime+name, a rebuilt kernel of the same release
// cannot fool (dpkg-deb -x keeps the package's mtimes, so two builds of one
// release can agree on all three). A stat stamp of the vmlinuz (with its
// inode and ctime, which unpacking a package changes) finds that file again
// without reading the 8 MB.
func Vmlinux(k *Kernel, cacheDir string) (string, error) {
	if k == nil {
		return "", errors.New("vmlinux: no kernel given")
	}
	// The fast path, at every start: a stat of the vmlinuz (not a hash of
	// its 8 MB) names the vmlinux made from it last time.
	stampName := ""
	if stamp, err := vmlinuxStamp(k); err == nil {
		stampName = vmlinuxStampPrefix + stamp
	}
	return stamped(cacheDir, stampName, "vmlinux-"+k.Release+"-", "", func() (string, []string, error) {
		sum, err := hashFile(k.Vmlinuz)
		if err != nil {
			return "", nil, err
		}
		h := sha256.New()
		hashField(h, []byte(vmlinuxFormat))
		hashField(h, sum)
		out := filepath.Join(cacheDir, cacheFileName("vmlinux-", k.Release, hex.EncodeToString(h.Sum(nil)[:12]), ""))
		if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
			return out, nil, nil
		}
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return "", nil, fmt.Errorf("creating cache directory: %w", err)
		}
		if err := ExtractVmlinux(k.Vmlinuz, out); err != nil {
			return "", nil, err
		}
		return out, nil, nil
	})
}

// vmlinuxFormat is what ExtractVmlinux makes of a vmlinuz; it names the
// cached file and its stamps, so that a runtime that makes it otherwise
// does not take an older one's file. v2: segments without their zero tails.
const vmlinuxFormat = "vmlinux v2"

// vmlinuxStampPrefix names the stamps that map a stat of a vmlinuz to the
// vmlinux made from it.
const vmlinuxStampPrefix = "vmlinux-stat-"

// vmlinuxStamp identifies k's vmlinuz by what stat says of it (a package
// upgrade replaces the file) and its release.
func vmlinuxStamp(k *Kernel) (string, error) {
	h := sha256.New()
	hashField(h, []byte("stat stamp of "+vmlinuxFormat))
	hashField(h, []byte(k.Release))
	if err := hashStats(h, []string{k.Vmlinuz}, nil); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hashing: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hashing %q: %w", path, err)
	}
	return h.Sum(nil), nil
}
