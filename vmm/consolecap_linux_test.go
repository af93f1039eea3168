package vmm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCapLog: a log that grows far beyond keep takes about keep bytes of
// space once capped, while its writer keeps appending at its own offset
// and its end still reads back.
func TestCapLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	w, err := os.Create(path) // the VMM's file: written at its own offset
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	line := []byte(strings.Repeat("x", 99) + "\n")
	const keep = 64 << 10
	var done int64
	for i := range 200 { // 20000 lines, about 2 MB
		for range 100 {
			if _, err := w.Write(line); err != nil {
				t.Fatal(err)
			}
		}
		if done, err = CapLog(path, keep, done); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	if _, err := w.WriteString("the last line\n"); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 3*keep {
		t.Errorf("the log uses %d bytes of space after capping, want about %d (size %d)", used, keep, st.Size)
	}
	if st.Size != 200*100*int64(len(line))+int64(len("the last line\n")) {
		t.Errorf("size %d: the writer's offset moved", st.Size)
	}
	if tail := ConsoleTail(path, 2); tail != string(bytes.TrimSpace(line))+"\nthe last line" {
		t.Errorf("tail %q", tail)
	}
	if d, err := CapLog(filepath.Join(t.TempDir(), "missing"), keep, 0); err != nil || d != 0 {
		t.Errorf("a missing log: %d, %v", d, err)
	}
}
