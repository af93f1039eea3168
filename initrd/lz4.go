package initrd

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// LZ4 legacy format (what the kernel's CONFIG_KERNEL_LZ4 uses): the magic,
// then blocks of [uint32 LE compressed size][LZ4 block], each decompressing
// on its own to at most 8 MiB. The blocks are decoded by
// github.com/pierrec/lz4/v4; the framing is read here because its Reader
// tells the size the kernel build appends from a block only when nothing
// follows it, and a payload found by its magic runs on to the end of the
// image.
const (
	lz4LegacyMagic = 0x184c2102
	lz4LegacyBlock = 8 << 20
	// LZ4_compressBound(8 MiB): a larger size cannot be a block, and is
	// what ends the stream when the image's appended length follows it.
	lz4LegacyMaxCompressed = lz4LegacyBlock + lz4LegacyBlock/255 + 16
)

// decodeLZ4Legacy writes the data of the LZ4 legacy stream at the start of
// src to dst. The stream ends at the first size that cannot be a block's
// (zero, too large, or past the end of src).
func decodeLZ4Legacy(dst io.Writer, src []byte) error {
	out := make([]byte, lz4LegacyBlock)
	for pos := 4; pos+4 <= len(src); { // after the magic
		n := int(binary.LittleEndian.Uint32(src[pos:]))
		if n == lz4LegacyMagic { // a concatenated stream
			pos += 4
			continue
		}
		if n == 0 || n > lz4LegacyMaxCompressed || n > len(src)-pos-4 {
			break // not a block: trailing data
		}
		k, err := lz4.UncompressBlock(src[pos+4:pos+4+n], out)
		if err != nil {
			return fmt.Errorf("decoding lz4 block at offset %d: %w", pos, err)
		}
		if _, err := dst.Write(out[:k]); err != nil {
			return err
		}
		pos += 4 + n
	}
	return nil
}
