package vmm

import (
	"io"
	"os"
	"strings"
)

// tailBytes bounds how much of a log ConsoleTail reads: the guest writes
// the console, so its size is the guest's choice.
const tailBytes = 64 << 10

// ConsoleTail returns the last n lines of a console (or VMM) log, with
// control characters and terminal escapes removed. A missing or unreadable
// file gives "".
func ConsoleTail(path string, n int) string {
	if n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - tailBytes
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, tailBytes))
	if err != nil {
		return ""
	}
	return tailLines(b, n, off > 0)
}

// tailLines returns the last n non-empty lines of b, sanitised; cut says
// the first line of b may be partial and is dropped when it is.
func tailLines(b []byte, n int, cut bool) string {
	s := sanitize(b)
	lines := strings.Split(s, "\n")
	if cut && len(lines) > 1 {
		lines = lines[1:]
	}
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		if l := strings.TrimRight(lines[i], " \t"); l != "" {
			keep = append(keep, l)
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	return strings.Join(keep, "\n")
}

// sanitize drops terminal escape sequences (CSI and two-byte ESC forms),
// carriage returns and other control characters, keeping newlines and tabs,
// and replaces invalid UTF-8.
func sanitize(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x1b: // ESC
			if i+1 < len(b) && b[i+1] == '[' {
				i += 2
				for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
					i++
				}
			} else {
				i++
			}
		case c == '\n' || c == '\t':
			sb.WriteByte(c)
		case c < 0x20 || c == 0x7f:
		default:
			sb.WriteByte(c)
		}
	}
	return strings.ToValidUTF8(sb.String(), "?")
}
