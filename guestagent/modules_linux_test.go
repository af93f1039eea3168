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

func TestLoadUnlessLive(t *testing.T) {
	sys := t.TempDir()
	mk := func(name, initstate string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(sys, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if initstate != "" {
			if err := os.WriteFile(filepath.Join(sys, name, "initstate"), []byte(initstate+"\n"), 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("virtio_net", "live")
	mk("fuse", "coming")
	mk("virtio", "") // built in: no initstate
	mk("net_failover", "going")
	for _, tc := range []struct {
		file string
		load bool
	}{
		{"virtio_net.ko", false},
		{"virtio.ko", false},
		{"fuse.ko", true}, // coming: finit_module waits for it and says EEXIST
		{"net_failover.ko.xz", true},
		{"failover.ko", true}, // not in the kernel
		{"9pnet-virtio.ko", true},
		{"load.order", true}, // not a module name: the loader decides
	} {
		t.Run(tc.file, func(t *testing.T) {
			var loaded []string
			err := loadUnlessLive(filepath.Join("/lib/modules", tc.file), sys, func(p string) error {
				loaded = append(loaded, p)
				return nil
			})
			if wantErr := map[bool]error{true: nil, false: errModuleLive}[tc.load]; err != wantErr || (len(loaded) == 1) != tc.load {
				t.Fatalf("loadUnlessLive(%s) = %v, loaded %v; want a load: %v", tc.file, err, loaded, tc.load)
			}
		})
	}
	mk("9pnet_virtio", "live") // the kernel's name of 9pnet-virtio.ko
	if err := loadUnlessLive("/lib/modules/9pnet-virtio.ko", sys, func(string) error { return errors.New("loaded") }); err != errModuleLive {
		t.Fatalf("a live module with '-' in its file name was loaded again: %v", err)
	}
	want := errors.New("finit failed")
	if err := loadUnlessLive("/lib/modules/failover.ko", sys, func(string) error { return want }); !errors.Is(err, want) {
		t.Fatalf("the loader's error was not returned: %v", err)
	}
}
