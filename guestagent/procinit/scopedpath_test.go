package procinit

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// osLinks is the real filesystem as a LinkReader.
type osLinks struct{}

func (osLinks) Lstat(p string) (fs.FileInfo, error) { return os.Lstat(p) }
func (osLinks) Readlink(p string) (string, error)   { return os.Readlink(p) }

func TestScopedJoin(t *testing.T) {
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("run")
	mk("var")
	mk("usr/lib")
	ln("/run", "var/run")          // absolute: relative to root
	ln("../../..", "usr/lib/up")   // climbs past root
	ln("usr/lib", "lib")           // relative
	ln("/etc/nowhere", "dangling") // to something missing
	ln("loop2", "loop1")
	ln("loop1", "loop2")

	tests := []struct{ in, want string }{
		{"/", ""},
		{"/proc", "proc"},
		{"/var/run/x", "run/x"},
		{"/var/run", "run"},
		{"/usr/lib/up/etc", "etc"},
		{"/../../etc", "etc"},
		{"/lib/modules", "usr/lib/modules"},
		{"/dangling/sub", "etc/nowhere/sub"},
		{"/missing/../../x", "x"},
		{"relative/dir", "relative/dir"},
		{"/usr/./lib//x/", "usr/lib/x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ScopedJoin(osLinks{}, root, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tt.want); got != want {
				t.Errorf("ScopedJoin(%q) = %q, want %q", tt.in, got, want)
			}
		})
	}
	if _, err := ScopedJoin(osLinks{}, root, "/loop1/x"); !errors.Is(err, ErrTooManySymlinks) {
		t.Errorf("symlink loop: got %v, want ErrTooManySymlinks", err)
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		p, dir string
		want   bool
	}{
		{"/proc", "/proc", true},
		{"/proc/sys/kernel", "/proc", true},
		{"/proc2", "/proc", false},
		{"/pro", "/proc", false},
		{"/", "/proc", false},
	} {
		if got := Within(tc.p, tc.dir); got != tc.want {
			t.Errorf("Within(%q, %q) = %v, want %v", tc.p, tc.dir, got, tc.want)
		}
	}
}
