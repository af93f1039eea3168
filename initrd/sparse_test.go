package initrd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// writeSparse writes data through a sparseWriter in chunks of chunk bytes
// and returns the file.
func writeSparse(t *testing.T, data []byte, chunk int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newSparseWriter(f)
	for rest := data; len(rest) > 0; {
		k := min(chunk, len(rest))
		if n, err := w.Write(rest[:k]); err != nil || n != k {
			t.Fatalf("write of %d: %d, %v", k, n, err)
		}
		rest = rest[k:]
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSparseWriter(t *testing.T) {
	text := bytes.Repeat([]byte("vmlinux "), 1000) // 8000 bytes, not a block
	zeros := func(n int) []byte { return make([]byte, n) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	inputs := map[string][]byte{
		"empty":                    nil,
		"no zeros":                 text,
		"all zeros":                zeros(3*sparseBlock + 5),
		"zeros at the end":         cat(text, zeros(5*sparseBlock)),
		"zeros at the start":       cat(zeros(5*sparseBlock), text),
		"zeros between":            cat(text, zeros(1<<21), text, zeros(100), text),
		"zeros across a buffer":    cat(text, zeros(3<<20+123), text),
		"a zero block not aligned": cat(text[:100], zeros(sparseBlock), text[:100]),
		"ends in a partial block":  cat(text, zeros(sparseBlock+17)),
	}
	for name, data := range inputs {
		for _, chunk := range []int{1 << 22, 1 << 20, 7000, 4095, 1} {
			if chunk == 1 && len(data) > 1<<16 {
				continue
			}
			p := writeSparse(t, data, chunk)
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s, chunks of %d: read back %d bytes that differ from the %d written", name, chunk, len(got), len(data))
			}
		}
	}
}
