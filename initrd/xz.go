package initrd

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// The xz container is parsed here rather than with xz.Reader because the
// kernel's build compresses x86 images with the x86 BCJ filter in front of
// LZMA2 (scripts/xz_wrap.sh: xz --check=crc32 --x86 --lzma2=dict=32MiB),
// which github.com/ulikunitz/xz does not support ("unsupported filter
// count"). Its lzma package decodes the LZMA2 data; the BCJ filter is in
// bcjx86.go, since no maintained Go module undoes it. Blocks are checked
// against their CRC32/CRC64/SHA-256; decoding stops at the index, so
// whatever follows the blocks (index, footer, the size the kernel build
// appends) is ignored.

const (
	xzFilterX86   = 0x04
	xzFilterLZMA2 = 0x21
)

var (
	errXZFormat      = errors.New("malformed xz stream")
	xzStreamMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	crc64Table       = crc64.MakeTable(crc64.ECMA)
	xzCheckSizes     = [16]int{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}
	errXZUnsupported = errors.New("unsupported xz feature")
)

// decodeXZ writes the data of the first xz stream in src to dst.
func decodeXZ(dst io.Writer, src []byte) error {
	if len(src) < 12 || !bytes.HasPrefix(src, xzStreamMagic) {
		return fmt.Errorf("%w: no stream header", errXZFormat)
	}
	flags := src[6:8]
	if crc32.ChecksumIEEE(flags) != binary.LittleEndian.Uint32(src[8:12]) {
		return fmt.Errorf("%w: stream header checksum mismatch", errXZFormat)
	}
	if flags[0] != 0 || flags[1]&0xf0 != 0 {
		return fmt.Errorf("%w: stream flags %#x", errXZFormat, flags)
	}
	check := flags[1]
	pos := 12
	for block := 0; ; block++ {
		if pos >= len(src) {
			return fmt.Errorf("%w: truncated before block %d", errXZFormat, block)
		}
		if src[pos] == 0 { // index indicator: no more blocks
			return nil
		}
		n, err := decodeXZBlock(dst, src[pos:], check)
		if err != nil {
			return fmt.Errorf("xz block %d: %w", block, err)
		}
		pos += n
	}
}

// newXZCheck returns the hash of an xz check ID, nil for "none".
func newXZCheck(id byte) (hash.Hash, error) {
	switch id {
	case 0:
		return nil, nil
	case 1:
		return crc32.NewIEEE(), nil
	case 4:
		return crc64.New(crc64Table), nil
	case 10:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("%w: check type %d", errXZUnsupported, id)
}

// decodeXZBlock decodes the block at the start of src and returns its
// length including padding and check.
func decodeXZBlock(dst io.Writer, src []byte, check byte) (int, error) {
	hlen := (int(src[0]) + 1) * 4
	if hlen > len(src) {
		return 0, fmt.Errorf("%w: truncated block header", errXZFormat)
	}
	hdr := src[:hlen]
	if crc32.ChecksumIEEE(hdr[:hlen-4]) != binary.LittleEndian.Uint32(hdr[hlen-4:]) {
		return 0, fmt.Errorf("%w: block header checksum mismatch", errXZFormat)
	}
	bflags := hdr[1]
	if bflags&0x3c != 0 {
		return 0, fmt.Errorf("%w: block flags %#x", errXZFormat, bflags)
	}
	p := hdr[2 : hlen-4]
	compSize, uncompSize := int64(-1), int64(-1)
	var err error
	if bflags&0x40 != 0 {
		if compSize, p, err = xzVarint(p); err != nil {
			return 0, err
		}
	}
	if bflags&0x80 != 0 {
		if uncompSize, p, err = xzVarint(p); err != nil {
			return 0, err
		}
	}
	var bcj *bcjX86Writer
	dictCap := -1
	nfilters := int(bflags&3) + 1
	for f := 0; f < nfilters; f++ {
		var id, psize int64
		if id, p, err = xzVarint(p); err != nil {
			return 0, err
		}
		if psize, p, err = xzVarint(p); err != nil {
			return 0, err
		}
		if psize > int64(len(p)) {
			return 0, fmt.Errorf("%w: filter properties", errXZFormat)
		}
		props := p[:psize]
		p = p[psize:]
		last := f == nfilters-1
		switch {
		case id == xzFilterLZMA2 && last && len(props) == 1:
			bits := int(props[0])
			if bits > 40 {
				return 0, fmt.Errorf("%w: LZMA2 dictionary size %d", errXZFormat, bits)
			}
			dictCap = int(lzma.MaxDictCap)
			if bits < 40 {
				dictCap = (2 | bits&1) << (bits/2 + 11)
			}
		case id == xzFilterX86 && !last && bcj == nil && (len(props) == 0 || len(props) == 4):
			bcj = &bcjX86Writer{}
			if len(props) == 4 {
				bcj.pos = binary.LittleEndian.Uint32(props)
			}
		default:
			return 0, fmt.Errorf("%w: filter %#x (%d of %d)", errXZUnsupported, id, f+1, nfilters)
		}
	}
	for _, b := range p {
		if b != 0 {
			return 0, fmt.Errorf("%w: block header padding", errXZFormat)
		}
	}
	h, err := newXZCheck(check)
	if err != nil {
		return 0, err
	}
	dictCap = max(dictCap, lzma.MinDictCap)
	body := bytes.NewReader(src[hlen:])
	lr, err := lzma.Reader2Config{DictCap: dictCap}.NewReader2(body)
	if err != nil {
		return 0, err
	}
	counter := &countWriter{w: dst}
	out := io.Writer(counter)
	if h != nil {
		out = io.MultiWriter(counter, h)
	}
	if bcj != nil {
		bcj.w = out
		out = bcj
	}
	if _, err := io.Copy(out, lr); err != nil {
		return 0, err
	}
	if bcj != nil {
		if err := bcj.flush(); err != nil {
			return 0, err
		}
	}
	// lzma.Reader2 reads chunk by chunk, exactly up to the end marker.
	consumed := int64(len(src)-hlen) - int64(body.Len())
	if compSize >= 0 && compSize != consumed {
		return 0, fmt.Errorf("%w: %d compressed bytes, header says %d", errXZFormat, consumed, compSize)
	}
	if uncompSize >= 0 && uncompSize != counter.n {
		return 0, fmt.Errorf("%w: %d uncompressed bytes, header says %d", errXZFormat, counter.n, uncompSize)
	}
	n := hlen + int(consumed)
	for n%4 != 0 {
		if n >= len(src) || src[n] != 0 {
			return 0, fmt.Errorf("%w: block padding", errXZFormat)
		}
		n++
	}
	cs := xzCheckSizes[check]
	if n+cs > len(src) {
		return 0, fmt.Errorf("%w: truncated block check", errXZFormat)
	}
	if h != nil && !xzCheckMatches(h, src[n:n+cs]) {
		return 0, fmt.Errorf("%w: block check mismatch", errXZFormat)
	}
	return n + cs, nil
}

// xzCheckMatches compares a block's check field with h: xz stores CRCs
// little-endian, Go's Sum appends them big-endian.
func xzCheckMatches(h hash.Hash, field []byte) bool {
	switch h := h.(type) {
	case hash.Hash32:
		return binary.LittleEndian.Uint32(field) == h.Sum32()
	case hash.Hash64:
		return binary.LittleEndian.Uint64(field) == h.Sum64()
	}
	return bytes.Equal(h.Sum(nil), field)
}

// xzVarint reads an xz multibyte integer (7 bits a byte, at most 9 bytes).
func xzVarint(p []byte) (int64, []byte, error) {
	var v uint64
	for i := 0; i < len(p) && i < 9; i++ {
		v |= uint64(p[i]&0x7f) << (7 * i)
		if p[i]&0x80 == 0 {
			if i > 0 && p[i] == 0 {
				break // not the shortest encoding
			}
			return int64(v), p[i+1:], nil
		}
	}
	return 0, nil, fmt.Errorf("%w: bad integer", errXZFormat)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
