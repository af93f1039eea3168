package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// zstd data is decoded by github.com/klauspost/compress/zstd. Its reader
// takes whatever follows a frame for the next frame and fails on the size
// the kernel build appends, so a kernel payload is cut to its first frame
// (zstdFrameLen) before it is decoded.

var errZstdFrame = errors.New("malformed zstd frame")

// decodeZstd writes the data of the zstd frame at the start of src to dst,
// ignoring what follows the frame.
func decodeZstd(dst io.Writer, src []byte) error {
	n, err := zstdFrameLen(src)
	if err != nil {
		return err
	}
	return decodeZstdFrames(dst, src[:n])
}

// decodeZstdFrames writes the data of all the zstd frames in src (a whole
// .zst file) to dst.
func decodeZstdFrames(dst io.Writer, src []byte) error {
	d, err := zstd.NewReader(bytes.NewReader(src))
	if err != nil {
		return fmt.Errorf("creating zstd decoder: %w", err)
	}
	defer d.Close()
	if _, err := d.WriteTo(dst); err != nil {
		return fmt.Errorf("decoding zstd data: %w", err)
	}
	return nil
}

// zstdFrameLen returns the length of the zstd frame at the start of src
// (RFC 8878 section 3.1.1): magic, frame header, blocks up to the last one,
// and the optional content checksum.
func zstdFrameLen(src []byte) (int, error) {
	if len(src) < 5 {
		return 0, errZstdFrame
	}
	fhd := src[4]
	if fhd&0x08 != 0 { // reserved bit
		return 0, errZstdFrame
	}
	singleSegment := fhd&0x20 != 0
	i := 5
	if !singleSegment {
		i++ // window descriptor
	}
	i += [4]int{0, 1, 2, 4}[fhd&3] // dictionary ID
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && singleSegment {
		fcs = 1
	}
	i += fcs
	for {
		if i+3 > len(src) {
			return 0, errZstdFrame
		}
		h := uint32(src[i]) | uint32(src[i+1])<<8 | uint32(src[i+2])<<16
		i += 3
		last := h&1 != 0
		size := int(h >> 3)
		switch (h >> 1) & 3 {
		case 0, 2: // raw, compressed
			i += size
		case 1: // RLE: one byte repeated size times
			i++
		default:
			return 0, errZstdFrame
		}
		if i > len(src) {
			return 0, errZstdFrame
		}
		if last {
			break
		}
	}
	if fhd&0x04 != 0 { // content checksum
		i += 4
	}
	if i > len(src) {
		return 0, errZstdFrame
	}
	return i, nil
}
