package initrd

import (
	"encoding/binary"
	"io"
)

// bcjX86Writer undoes the x86 BCJ filter, which turned the relative
// targets of E8 (call) and E9 (jmp) instructions into absolute ones to help
// compression. It is a port of bcj_x86() of xz-embedded (public domain),
// the decoder in the kernel's own lib/xz/xz_dec_bcj.c.
type bcjX86Writer struct {
	w        io.Writer
	pos      uint32 // stream position of buf[0]
	prevMask uint32
	buf      []byte // data not converted yet: an instruction may straddle writes
}

var (
	bcjMaskAllowed = [8]bool{true, true, true, false, true, false, false, false}
	bcjMaskBitNum  = [8]uint32{0, 1, 2, 2, 3, 3, 3, 3}
)

func bcjTestMSByte(b byte) bool { return b == 0x00 || b == 0xff }

func (b *bcjX86Writer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	n := b.filter(b.buf)
	if n > 0 {
		if _, err := b.w.Write(b.buf[:n]); err != nil {
			return 0, err
		}
		b.pos += uint32(n)
		b.buf = b.buf[:copy(b.buf, b.buf[n:])]
	}
	return len(p), nil
}

// flush writes the last bytes, which are too few to hold an instruction.
func (b *bcjX86Writer) flush() error {
	if _, err := b.w.Write(b.buf); err != nil {
		return err
	}
	b.buf = b.buf[:0]
	return nil
}

// filter converts buf in place and returns how many bytes are final.
func (b *bcjX86Writer) filter(buf []byte) int {
	if len(buf) <= 4 {
		return 0
	}
	size := len(buf) - 4
	prevPos := -1
	prevMask := b.prevMask
	i := 0
	for ; i < size; i++ {
		if buf[i]&0xfe != 0xe8 {
			continue
		}
		d := i - prevPos
		if d > 3 {
			prevMask = 0
		} else {
			prevMask = (prevMask << (d - 1)) & 7
			if prevMask != 0 {
				c := buf[i+4-int(bcjMaskBitNum[prevMask])]
				if !bcjMaskAllowed[prevMask] || bcjTestMSByte(c) {
					prevPos = i
					prevMask = prevMask<<1 | 1
					continue
				}
			}
		}
		prevPos = i
		if !bcjTestMSByte(buf[i+4]) {
			prevMask = prevMask<<1 | 1
			continue
		}
		src := binary.LittleEndian.Uint32(buf[i+1:])
		var dest uint32
		for {
			dest = src - (b.pos + uint32(i) + 5)
			if prevMask == 0 {
				break
			}
			j := bcjMaskBitNum[prevMask] * 8
			if !bcjTestMSByte(byte(dest >> (24 - j))) {
				break
			}
			src = dest ^ (1<<(32-j) - 1)
		}
		dest &= 0x01ffffff
		dest |= -(dest & 0x01000000)
		binary.LittleEndian.PutUint32(buf[i+1:], dest)
		i += 4
	}
	if d := i - prevPos; d > 3 {
		b.prevMask = 0
	} else {
		b.prevMask = prevMask << (d - 1)
	}
	return i
}
