package guestagent

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// finitRecorder is a fake finit_module: it reads what the descriptor
// holds and answers err.
type finitRecorder struct {
	got [][]byte
	err error
}

func (r *finitRecorder) finit(fd int) error {
	// pread on the descriptor itself: an *os.File of it would close it
	// when collected, under its owner.
	var data []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Pread(fd, buf, int64(len(data)))
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		data = append(data, buf[:n]...)
	}
	r.got = append(r.got, data)
	return r.err
}

func TestLoadModuleFile(t *testing.T) {
	dir := t.TempDir()
	elf := []byte("\x7fELF pretend module")
	plain := filepath.Join(dir, "bridge.ko")
	if err := os.WriteFile(plain, elf, 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(elf)
	zw.Close()
	packed := filepath.Join(dir, "overlay.ko.gz")
	if err := os.WriteFile(packed, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{plain, packed} {
		r := &finitRecorder{}
		if err := loadModuleFile(p, r.finit); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(r.got) != 1 || !bytes.Equal(r.got[0], elf) {
			t.Errorf("%s: finit_module got %q, want the uncompressed module", p, r.got)
		}
		// Loaded already, or by a concurrent request: success.
		r.err = unix.EEXIST
		if err := loadModuleFile(p, r.finit); err != nil {
			t.Errorf("%s: EEXIST: %v", p, err)
		}
		r.err = unix.ENOEXEC
		var pe *os.PathError
		if err := loadModuleFile(p, r.finit); !errors.Is(err, unix.ENOEXEC) || !errors.As(err, &pe) || pe.Path != p || pe.Op != "finit_module" {
			t.Errorf("%s: ENOEXEC: %v", p, err)
		}
	}

	r := &finitRecorder{}
	if err := loadModuleFile(filepath.Join(dir, "missing.ko"), r.finit); !errors.Is(err, os.ErrNotExist) || len(r.got) != 0 {
		t.Errorf("missing file: %v, finit called %d times", err, len(r.got))
	}
	bad := filepath.Join(dir, "bad.ko.xz")
	if err := os.WriteFile(bad, []byte("not xz"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := loadModuleFile(bad, r.finit); err == nil || len(r.got) != 0 {
		t.Errorf("corrupt .ko.xz: %v, finit called %d times", err, len(r.got))
	}
}
