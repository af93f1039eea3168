package initrd

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

// TestSparseWriterHoles: the zeros take no blocks on a filesystem that
// makes holes (the test's temporary directory: skipped where it does not).
func TestSparseWriterHoles(t *testing.T) {
	data := bytes.Join([][]byte{bytes.Repeat([]byte{0xcc}, 1<<20), make([]byte, 8<<20), {1}}, nil)
	fi, err := os.Stat(writeSparse(t, data, 1<<16))
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no st_blocks")
	}
	used := st.Blocks * 512
	if fi.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", fi.Size(), len(data))
	}
	if used >= 4<<20 {
		t.Errorf("%d bytes on disk for 1 MiB of data and 8 MiB of zeros: the zeros were written", used)
	}
}
