package initrd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Go's standard library has no zstd decoder and go.mod pins none, so zstd
// data is handed to the zstd program (package zstd on Debian). It rejects
// trailing bytes, so the frame's exact length is worked out first from its
// headers.

// zstdTimeout bounds one run of the zstd program.
const zstdTimeout = 2 * time.Minute

// runZstd decompresses one zstd frame (or a whole .zst file) with the zstd
// program.
func runZstd(dst io.Writer, frame []byte) error {
	path, err := exec.LookPath("zstd")
	if err != nil {
		return fmt.Errorf("decompressing zstd data needs the zstd program: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), zstdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(frame)
	cmd.Stdout = dst
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("running zstd: no result after %v: %w", zstdTimeout, ctx.Err())
		}
		return fmt.Errorf("running zstd: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func decodeZstd(dst io.Writer, src []byte) error {
	n, err := zstdFrameLen(src)
	if err != nil {
		return err
	}
	cw := &firstErrWriter{w: dst}
	if err := runZstd(cw, src[:n]); err != nil {
		if cw.err != nil {
			return cw.err // e.g. errNotELF: say why the output was refused
		}
		return err
	}
	return nil
}

// firstErrWriter remembers the first error of w, which exec reports only as
// a broken pipe.
type firstErrWriter struct {
	w   io.Writer
	err error
}

func (f *firstErrWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

var errZstdFrame = errors.New("malformed zstd frame")

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
