package initrd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// LZ4 legacy format (what the kernel's CONFIG_KERNEL_LZ4 uses): the magic,
// then blocks of [uint32 LE compressed size][LZ4 block], each decompressing
// on its own to at most 8 MiB.
const (
	lz4LegacyBlock = 8 << 20
	// LZ4_compressBound(8 MiB): a larger size cannot be a block, and is
	// what ends the stream when the image's appended length follows it.
	lz4LegacyMaxCompressed = lz4LegacyBlock + lz4LegacyBlock/255 + 16
)

var errLZ4Corrupt = errors.New("corrupt lz4 block")

func decodeLZ4Legacy(dst io.Writer, src []byte) error {
	src = src[4:] // magic
	out := make([]byte, 0, lz4LegacyBlock)
	for len(src) >= 4 {
		n := int(binary.LittleEndian.Uint32(src))
		if n == 0x184c2102 { // a concatenated stream: its magic again
			src = src[4:]
			continue
		}
		if n == 0 || n > lz4LegacyMaxCompressed || n > len(src)-4 {
			break // not a block: trailing data
		}
		var err error
		out, err = lz4Block(out[:0], src[4:4+n], lz4LegacyBlock)
		if err != nil {
			return fmt.Errorf("lz4 block at %d: %w", len(src), err)
		}
		if _, err := dst.Write(out); err != nil {
			return err
		}
		src = src[4+n:]
	}
	return nil
}

// lz4Block decodes one LZ4 block (sequences of token, literals, offset,
// match) and appends at most limit bytes to out.
func lz4Block(out, in []byte, limit int) ([]byte, error) {
	i := 0
	for i < len(in) {
		token := in[i]
		i++
		lit := int(token >> 4)
		if lit == 15 {
			for {
				if i >= len(in) {
					return nil, errLZ4Corrupt
				}
				b := in[i]
				i++
				lit += int(b)
				if b != 255 {
					break
				}
			}
		}
		if lit > len(in)-i || len(out)+lit > limit {
			return nil, errLZ4Corrupt
		}
		out = append(out, in[i:i+lit]...)
		i += lit
		if i == len(in) {
			return out, nil // the last sequence has literals only
		}
		if i+2 > len(in) {
			return nil, errLZ4Corrupt
		}
		off := int(binary.LittleEndian.Uint16(in[i:]))
		i += 2
		if off == 0 || off > len(out) {
			return nil, errLZ4Corrupt
		}
		ml := int(token&15) + 4
		if token&15 == 15 {
			for {
				if i >= len(in) {
					return nil, errLZ4Corrupt
				}
				b := in[i]
				i++
				ml += int(b)
				if b != 255 {
					break
				}
			}
		}
		if len(out)+ml > limit {
			return nil, errLZ4Corrupt
		}
		// Byte by byte: the match may overlap what it produces.
		start := len(out) - off
		for k := 0; k < ml; k++ {
			out = append(out, out[start+k])
		}
	}
	return nil, errLZ4Corrupt // a block ends with literals
}
