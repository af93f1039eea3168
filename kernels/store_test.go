package kernels

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree writes an extracted linux-image package of release under dir.
func fakeTree(t *testing.T, dir, release string) {
	t.Helper()
	for p, data := range map[string]string{
		"boot/vmlinuz-" + release:                           "kernel " + release,
		"boot/config-" + release:                            "CONFIG_X=y",
		"lib/modules/" + release + "/kernel/fs/x/x.ko":      "module " + release,
		"lib/modules/" + release + "/modules.builtin":       "kernel/fs/y.ko\n",
		"lib/modules/" + release + "/kernel/drivers/y/y.ko": "module y",
	} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/usr/src/linux-headers-"+release, filepath.Join(dir, "lib/modules", release, "build")); err != nil {
		t.Fatal(err)
	}
}

// fakeDeb builds a .deb of release with dpkg-deb.
func fakeDeb(t *testing.T, release string) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found: install the dpkg package")
	}
	dir := t.TempDir()
	fakeTree(t, dir, release)
	if err := os.MkdirAll(filepath.Join(dir, "DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	control := "Package: linux-image-" + release + "\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n"
	if err := os.WriteFile(filepath.Join(dir, "DEBIAN", "control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	deb := filepath.Join(t.TempDir(), "linux-image-"+release+".deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", dir, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v: %s", err, out)
	}
	return deb
}

func releases(t *testing.T, s *Store) string {
	t.Helper()
	es, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		r := e.Release
		if e.Default {
			r += "*"
		}
		if e.InUse {
			r += "!"
		}
		out = append(out, r)
	}
	return strings.Join(out, " ")
}

// TestStore: kernels added from a directory and a package, listed, the
// default chosen, held while in use, removed only when neither in use nor
// the default.
func TestStore(t *testing.T) {
	ctx := context.Background()
	s := Open(filepath.Join(t.TempDir(), "kernels"))
	s.CacheDir = t.TempDir()
	if _, err := s.Find(""); err == nil {
		t.Error("Find in an empty store succeeded")
	}
	// What starts cached of each kernel: initrd.Vmlinux's file and stamp,
	// an initrd with its stamp, its module index and alias table.
	for _, r := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64"} {
		for name, content := range map[string]string{
			"vmlinux-" + r + "-abcd": "", "vmlinux-stat-" + r: "vmlinux-" + r + "-abcd",
			"initrd-" + r + "-abcd.cpio": "", "initrd-stat-" + r: "initrd-" + r + "-abcd.cpio",
			"modindex-" + r + "-abcd.gz": "", "modaliases-" + r + "-abcd": "",
		} {
			if err := os.WriteFile(filepath.Join(s.CacheDir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	fakeTree(t, dir, "6.1.0-9-amd64")
	if added, err := s.Add(ctx, dir); err != nil || len(added) != 1 || added[0].Release != "6.1.0-9-amd64" {
		t.Fatalf("Add(dir) = %v, %v", added, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "boot/vmlinuz-6.1.0-9-amd64")); err != nil {
		t.Errorf("Add moved the caller's directory: %v", err)
	}
	if _, err := s.Add(ctx, fakeDeb(t, "6.1.0-10-amd64")); err != nil {
		t.Fatal(err)
	}
	if got := releases(t, s); got != "6.1.0-9-amd64 6.1.0-10-amd64*" {
		t.Errorf("List = %q: the highest release is the default", got)
	}
	k, err := s.Find("")
	if err != nil || k.Release != "6.1.0-10-amd64" {
		t.Fatalf("Find(default) = %v, %v", k, err)
	}
	if b, err := os.ReadFile(filepath.Join(k.ModulesDir, "kernel/fs/x/x.ko")); err != nil || string(b) != "module 6.1.0-10-amd64" {
		t.Errorf("the package's module: %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(k.ModulesDir, "build")); err != nil || l != "/usr/src/linux-headers-6.1.0-10-amd64" {
		t.Errorf("the modules' build link: %q, %v", l, err)
	}
	if staged, _ := filepath.Glob(filepath.Join(s.Root, stagingDir+"*")); len(staged) > 0 {
		t.Errorf("staging left: %v", staged)
	}

	for _, tc := range []struct {
		name string
		err  error
		f    func() error
	}{
		{"the same release again", ErrAlreadyAdded, func() error { _, err := s.Add(ctx, dir); return err }},
		{"a file that is no package", ErrNotAPackage, func() error { _, err := s.Add(ctx, filepath.Join(dir, "boot/config-6.1.0-9-amd64")); return err }},
		{"a directory without a kernel", ErrNotAPackage, func() error { _, err := s.Add(ctx, t.TempDir()); return err }},
		{"an unknown release", ErrNotAdded, func() error { _, err := s.Find("5.10.0-1-amd64"); return err }},
		{"a path as a release", ErrBadRelease, func() error { _, err := s.Find("../boot"); return err }},
		{"the default while others exist", ErrIsDefault, func() error { return s.Remove("6.1.0-10-amd64") }},
		{"a default that is not added", ErrNotAdded, func() error { return s.SetDefault("7.0") }},
	} {
		if err := tc.f(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}

	if err := s.SetDefault("6.1.0-9-amd64"); err != nil {
		t.Fatal(err)
	}
	k, unhold, err := s.Hold("")
	if err != nil || k.Release != "6.1.0-9-amd64" {
		t.Fatalf("Hold(default) = %v, %v", k, err)
	}
	_, unhold2, err := s.Hold("6.1.0-10-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if got := releases(t, s); got != "6.1.0-9-amd64*! 6.1.0-10-amd64!" {
		t.Errorf("List = %q", got)
	}
	if err := s.Remove("6.1.0-10-amd64"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "6.1.0-10-amd64") {
		t.Errorf("Remove(in use) = %v, want ErrInUse naming it", err)
	}
	unhold2()
	if err := s.Remove("6.1.0-10-amd64"); err != nil {
		t.Fatalf("Remove after the VM ended: %v", err)
	}
	if got := releases(t, s); got != "6.1.0-9-amd64*!" {
		t.Errorf("List after Remove = %q", got)
	}
	if cached, _ := filepath.Glob(filepath.Join(s.CacheDir, "*")); len(cached) != 6 || strings.Contains(strings.Join(cached, " "), "6.1.0-10-amd64") {
		t.Errorf("cache after Remove: %q, want only the other kernel's six files", cached)
	}
	// The last kernel stays: no container could start without one.
	unhold()
	if err := s.Remove("6.1.0-9-amd64"); !errors.Is(err, ErrLastKernel) {
		t.Errorf("Remove(the last kernel) = %v, want ErrLastKernel", err)
	}
	left, _ := os.ReadDir(filepath.Join(s.Root, "boot"))
	mods, _ := os.ReadDir(filepath.Join(s.Root, "lib/modules"))
	if len(left) != 2 || len(mods) != 1 {
		t.Errorf("left after removing 6.1.0-10-amd64: boot %v, modules %v", left, mods)
	}
}

// TestAddFailureLeavesNothing: a package that fails to unpack leaves no
// staging directory and no kernel.
func TestAddFailureLeavesNothing(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "kernels"))
	s.extractDeb = func(ctx context.Context, deb, dir string) error {
		fakeTree(t, dir, "6.1.0-9-amd64")
		return errors.New("dpkg-deb: truncated archive")
	}
	deb := filepath.Join(t.TempDir(), "k.deb")
	if err := os.WriteFile(deb, []byte("!<arch>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(context.Background(), deb); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("Add = %v", err)
	}
	entries, _ := os.ReadDir(s.Root)
	if len(entries) != 0 {
		t.Errorf("left in the store: %v", entries)
	}
}
