package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCopySparseKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	// 64 MiB with two 4 KiB data extents.
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 40 << 20} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(off>>20) + 1}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	dst := filepath.Join(dir, "dst")
	if err := CopySparse(dst, src); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs from the source")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 4<<20 {
		t.Errorf("the copy uses %d bytes of a 64 MiB file with 8 KiB of data: not sparse", used)
	}
}

func TestDiskCache(t *testing.T) {
	dir := t.TempDir()
	c := DiskCache{Dir: filepath.Join(dir, "cache"), Max: 2}
	var tuned []string
	run := func(_ context.Context, name string, args ...string) ([]byte, error) {
		tuned = append(tuned, name+" "+args[0]+" "+filepath.Base(args[1]))
		return nil, nil
	}
	builds := 0
	build := func(_ context.Context, rootfs, image string, opts DiskOptions) (*DiskInfo, error) {
		builds++
		if rootfs == "bad" {
			return nil, errors.New("mkfs failed")
		}
		if err := os.WriteFile(image, []byte("image of "+rootfs), 0o600); err != nil {
			return nil, err
		}
		return &DiskInfo{Path: image, Size: 11, RootMode: 0o751, Devices: []DeviceNode{{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}}}, nil
	}
	ctx := context.Background()
	img := func(n string) string { return filepath.Join(dir, n+".img") }
	info, hit, err := c.Build(ctx, build, "r1", img("a"), "layers-1", DiskOptions{})
	if err != nil || hit || builds != 1 {
		t.Fatalf("first build: %v hit=%v builds=%d", err, hit, builds)
	}
	info, hit, err = c.Build(ctx, build, "r1", img("b"), "layers-1", DiskOptions{Run: run})
	if err != nil || !hit || builds != 1 {
		t.Fatalf("second build: %v hit=%v builds=%d", err, hit, builds)
	}
	if len(tuned) != 1 || tuned[0] != "btrfstune -m b.img" {
		t.Errorf("the copy's UUID: ran %q, want btrfstune -m on it", tuned)
	}
	if got, _ := os.ReadFile(img("b")); string(got) != "image of r1" || info.Path != img("b") || info.RootMode != 0o751 || len(info.Devices) != 1 {
		t.Errorf("cached copy %q, info %+v", got, info)
	}
	// Another free space is another image; no key is no cache.
	if _, hit, _ := c.Build(ctx, build, "r1", img("c"), "layers-1", DiskOptions{FreeSpace: 1, Run: run}); hit {
		t.Error("a hit across free-space settings")
	}
	if _, hit, _ := c.Build(ctx, build, "r1", img("d"), "", DiskOptions{Run: run}); hit || builds != 3 {
		t.Errorf("an empty key used the cache (builds %d)", builds)
	}
	if _, _, err := c.Build(ctx, build, "bad", img("e"), "layers-2", DiskOptions{}); err == nil {
		t.Error("a failed build is no error")
	}
	// Max 2: a third image evicts the least recently used.
	if _, _, err := c.Build(ctx, build, "r3", img("f"), "layers-3", DiskOptions{}); err != nil {
		t.Fatal(err)
	}
	if descs, _ := filepath.Glob(filepath.Join(c.Dir, "*.json")); len(descs) != 2 {
		t.Errorf("cache holds %d images, want Max 2", len(descs))
	}
	if imgs, _ := filepath.Glob(filepath.Join(c.Dir, "*.img")); len(imgs) != 2 {
		t.Errorf("cache holds %d image files, want 2", len(imgs))
	}
}

// TestDiskCacheCopiesGetTheirOwnUUID: two containers of one image in a
// pod's VM must be mountable side by side.
func TestDiskCacheCopiesGetTheirOwnUUID(t *testing.T) {
	for _, tool := range []string{DefaultMkfs, DefaultBtrfstune} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (btrfs-progs): %v", tool, err)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := DiskCache{Dir: filepath.Join(dir, "cache")}
	ctx := context.Background()
	var uuids [][]byte
	for i, name := range []string{"a.img", "b.img", "c.img"} {
		img := filepath.Join(dir, name)
		_, hit, err := c.Build(ctx, BuildDisk, root, img, "k", DiskOptions{FreeSpace: 16 << 20})
		if err != nil || hit != (i > 0) {
			t.Fatalf("build %d: %v, hit %v", i, err, hit)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		// The superblock is at 64 KiB; its fsid at offset 0x20.
		fsid := make([]byte, 16)
		_, err = f.ReadAt(fsid, 0x10000+0x20)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range uuids {
			if bytes.Equal(u, fsid) {
				t.Fatalf("%s has the filesystem UUID of an earlier copy", name)
			}
		}
		uuids = append(uuids, fsid)
	}
}

// BenchmarkDiskCacheHit is a container's disk from the cache (copy and
// btrfstune -m), to set beside BenchmarkBuildDisk's mkfs.btrfs of the
// same tree.
func BenchmarkDiskCacheHit(b *testing.B) {
	for _, tool := range []string{DefaultMkfs, DefaultBtrfstune} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("needs %s: %v", tool, err)
		}
	}
	root, content := benchTree(b)
	out := b.TempDir()
	c := DiskCache{Dir: filepath.Join(out, "cache")}
	if _, _, err := c.Build(b.Context(), BuildDisk, root, filepath.Join(out, "first.img"), "bench", DiskOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(content)
	b.ResetTimer()
	for i := range b.N {
		image := filepath.Join(out, fmt.Sprintf("disk%d.img", i))
		if _, hit, err := c.Build(b.Context(), BuildDisk, root, image, "bench", DiskOptions{}); err != nil || !hit {
			b.Fatalf("hit %v: %v", hit, err)
		}
		b.StopTimer()
		os.Remove(image)
		b.StartTimer()
	}
}

func TestOverlayKey(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		opts []string
		want string
	}{
		{"fresh", []string{"rw", "lowerdir=/s/2:/s/1", "upperdir=" + empty, "workdir=/w"}, "overlay:/s/2:/s/1"},
		{"relative lower dirs", []string{"lowerdir=l/ABC:l/DEF", "upperdir=" + empty}, ""},
		{"no lower dirs", []string{"upperdir=" + empty}, ""},
		{"missing upper dir", []string{"lowerdir=/s/1", "upperdir=" + filepath.Join(empty, "nope")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := OverlayKey(tc.opts); got != tc.want {
				t.Errorf("OverlayKey = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOverlayKeyPlaceholders: podman's empty mount points in the upper dir
// keep a rootfs cacheable (and are part of its key); data does not.
func TestOverlayKeyPlaceholders(t *testing.T) {
	upper := func(files map[string]string) string {
		d := t.TempDir()
		for p, data := range files {
			full := filepath.Join(d, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if target, ok := strings.CutPrefix(data, "->"); ok {
				if err := os.Symlink(target, full); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	podman := map[string]string{"etc/hosts": "", "etc/hostname": "", "etc/mtab": "->/proc/mounts", "run/.containerenv": ""}
	key := func(u string) string { return OverlayKey([]string{"lowerdir=/s/2:/s/1", "upperdir=" + u}) }
	a, b := key(upper(podman)), key(upper(podman))
	if a == "" || a != b {
		t.Errorf("two upper dirs with the same placeholders: keys %q and %q, want one non-empty key", a, b)
	}
	if a == key(t.TempDir()) {
		t.Error("placeholders do not change the key")
	}
	if got := key(upper(map[string]string{"etc/hosts": "127.0.0.1 localhost\n"})); got != "" {
		t.Errorf("an upper dir with data has key %q", got)
	}
}
