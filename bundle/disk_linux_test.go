package bundle

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeMkfs is a Runner for tests: it records every call with the size of the
// image file (the last argument) at that moment, then returns out and err.
// With block set it waits until ctx is done and returns ctx.Err().
type fakeMkfs struct {
	out   []byte
	err   error
	block bool
	calls []fakeCall
}

type fakeCall struct {
	name string
	args []string
	size int64 // of the image file when mkfs ran; -1 if it did not exist
}

func (f *fakeMkfs) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	c := fakeCall{name: name, args: args, size: -1}
	if len(args) > 0 {
		if fi, err := os.Stat(args[len(args)-1]); err == nil {
			c.size = fi.Size()
		}
	}
	f.calls = append(f.calls, c)
	if f.block {
		<-ctx.Done()
		return f.out, ctx.Err()
	}
	return f.out, f.err
}

// mkfile writes a file of size random bytes (or a sparse one when sparse).
func mkfile(t testing.TB, p string, size int64, sparse bool) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if sparse {
		err = f.Truncate(size)
	} else {
		_, err = io.CopyN(f, rand.NewChaCha8([32]byte{byte(size)}), size)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// simpleTree makes a rootfs without device nodes: files (one 100 MiB sparse
// file, so that the estimate is above the mkfs.btrfs minimum), a hardlink
// pair, a symlink, a fifo, an empty directory. It returns the total file
// size (hardlinked data once) and the number of entries below the root.
func simpleTree(t testing.TB) (root string, content int64, entries int) {
	t.Helper()
	root = t.TempDir()
	mkfile(t, filepath.Join(root, "etc/hostname"), 5, false)
	mkfile(t, filepath.Join(root, "usr/lib/big"), 100<<20, true)
	mkfile(t, filepath.Join(root, "usr/bin/tool"), 10000, false)
	must(t, os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool2")))
	must(t, os.Symlink("../etc/hostname", filepath.Join(root, "usr/hn")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	must(t, os.Mkdir(filepath.Join(root, "empty"), 0o700))
	// etc, etc/hostname, usr, usr/lib, usr/lib/big, usr/bin, usr/bin/tool,
	// usr/bin/tool2, usr/hn, fifo, empty
	return root, 5 + 100<<20 + 10000, 11
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestBuildDiskArgsAndSize(t *testing.T) {
	root, content, entries := simpleTree(t)
	outDir := t.TempDir()
	image := filepath.Join(outDir, "disk.img")

	sizes := map[int64]int64{} // FreeSpace option -> image size
	for _, free := range []int64{-1, 0, 1 << 30} {
		f := &fakeMkfs{}
		info, err := BuildDisk(t.Context(), root, image, DiskOptions{FreeSpace: free, Mkfs: "/opt/mkfs.btrfs", Run: f.run})
		if err != nil {
			t.Fatalf("FreeSpace %d: %v", free, err)
		}
		if len(f.calls) != 1 {
			t.Fatalf("FreeSpace %d: mkfs ran %d times", free, len(f.calls))
		}
		c := f.calls[0]
		if c.name != "/opt/mkfs.btrfs" {
			t.Errorf("ran %q, want /opt/mkfs.btrfs", c.name)
		}
		want := []string{"-q", "-f", "-m", "single", "-d", "single", "--rootdir", root}
		if len(c.args) != len(want)+1 || !slices.Equal(c.args[:len(want)], want) {
			t.Fatalf("args %q, want %q followed by the image", c.args, want)
		}
		tmp := c.args[len(want)]
		if filepath.Dir(tmp) != outDir || !strings.HasPrefix(filepath.Base(tmp), ".disk.img.") || !strings.HasSuffix(tmp, ".tmp") {
			t.Errorf("mkfs wrote %q, want a temporary .disk.img.*.tmp in %q", tmp, outDir)
		}
		if c.size != info.Size {
			t.Errorf("image was %d bytes when mkfs ran, DiskInfo.Size %d", c.size, info.Size)
		}
		if info.Size < MinImageSize || info.Size%(1<<20) != 0 {
			t.Errorf("size %d: below the minimum or not whole MiB", info.Size)
		}
		if info.Path != image || info.ContentBytes != content || info.Files != entries || len(info.Devices) != 0 {
			t.Errorf("DiskInfo %+v; want path %q, %d content bytes, %d files, no devices", info, image, content, entries)
		}
		if fi, err := os.Stat(image); err != nil || fi.Size() != info.Size {
			t.Errorf("image: %v, size %v, want %d", err, fi, info.Size)
		}
		if names := dirNames(t, outDir); !slices.Equal(names, []string{"disk.img"}) {
			t.Errorf("output directory holds %q, want only disk.img", names)
		}
		sizes[free] = info.Size
	}
	if got := sizes[0] - sizes[-1]; got != DefaultFreeSpace {
		t.Errorf("default free space added %d bytes, want %d", got, DefaultFreeSpace)
	}
	if got := sizes[1<<30] - sizes[-1]; got != 1<<30 {
		t.Errorf("FreeSpace 1 GiB added %d bytes", got)
	}
	if sizes[-1] < content {
		t.Errorf("size without free space %d is below the content %d", sizes[-1], content)
	}
}

func TestBuildDiskPaths(t *testing.T) {
	root, _, _ := simpleTree(t)

	t.Run("relative paths and a symlinked rootfs", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.Symlink(root, filepath.Join(dir, "rootfs")))
		t.Chdir(dir)
		f := &fakeMkfs{}
		info, err := BuildDisk(t.Context(), "rootfs", "out.img", DiskOptions{Run: f.run})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.calls[0].args[7]; got != root {
			t.Errorf("--rootdir %q, want the resolved %q", got, root)
		}
		if f.calls[0].name != DefaultMkfs {
			t.Errorf("ran %q, want %q", f.calls[0].name, DefaultMkfs)
		}
		if info.Path != filepath.Join(dir, "out.img") {
			t.Errorf("Path %q", info.Path)
		}
	})

	bad := []struct {
		name, rootfs, image, want string
	}{
		{"image inside rootfs", root, filepath.Join(root, "usr/disk.img"), "must not be inside the rootfs"},
		{"missing rootfs", filepath.Join(root, "nope"), filepath.Join(t.TempDir(), "d.img"), "nope: no such file or directory"},
		{"rootfs is a file", filepath.Join(root, "etc/hostname"), filepath.Join(t.TempDir(), "d.img"), "is not a directory"},
		{"missing image directory", root, filepath.Join(t.TempDir(), "nodir/d.img"), "nodir"},
		{"empty rootfs path", "", "x.img", "must not be empty"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMkfs{}
			_, err := BuildDisk(t.Context(), tt.rootfs, tt.image, DiskOptions{Run: f.run})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if len(f.calls) != 0 {
				t.Errorf("mkfs ran: %+v", f.calls)
			}
			if _, serr := os.Stat(tt.image); serr == nil {
				t.Errorf("image %q exists", tt.image)
			}
		})
	}
}

func TestBuildDiskFailureCleansUp(t *testing.T) {
	root, _, _ := simpleTree(t)
	tests := []struct {
		name string
		fake *fakeMkfs
		opts DiskOptions
		// cancel cancels the caller's context while mkfs runs.
		cancel bool
		want   []string
		is     error
	}{
		{
			name: "mkfs fails",
			fake: &fakeMkfs{
				out: []byte("NOTE: several default settings have changed in version 5.15, please make sure\n" +
					"      this does not affect your deployments:\n      - DUP for metadata (-m dup)\n" +
					"ERROR: cannot open etc/shadow: Permission denied\nERROR: unable to traverse directory x: 1\n"),
				err: errors.New("exit status 1"),
			},
			want: []string{"exit status 1: ERROR: cannot open etc/shadow: Permission denied; ERROR: unable to traverse directory x: 1", "--rootdir \"" + root + "\""},
			is:   ErrMkfs,
		},
		{
			name: "host filesystem full",
			fake: &fakeMkfs{
				out: []byte("ERROR: failed to write bytenr 25997312 length 4096: No space left on device\nERROR: failed to write big\n"),
				err: errors.New("exit status 1"),
			},
			want: []string{"is full: no space left on device", "--rootdir \"" + root + "\""},
			is:   syscall.ENOSPC,
		},
		{
			name: "mkfs times out",
			fake: &fakeMkfs{block: true},
			opts: DiskOptions{Timeout: 50 * time.Millisecond},
			want: []string{"timed out after 50ms"},
			is:   ErrMkfs,
		},
		{
			name:   "caller cancels",
			fake:   &fakeMkfs{block: true},
			cancel: true,
			want:   []string{"context canceled"},
			is:     context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outDir := t.TempDir()
			image := filepath.Join(outDir, "disk.img")
			// A previous image must survive a failed rebuild.
			must(t, os.WriteFile(image, []byte("old image"), 0o600))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			tt.opts.Run = tt.fake.run
			_, err := BuildDisk(ctx, root, image, tt.opts)
			if err == nil {
				t.Fatal("BuildDisk succeeded")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			for _, w := range append(tt.want, image) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "NOTE") {
				t.Errorf("error %q repeats mkfs.btrfs's note", err)
			}
			if len(tt.fake.calls) != 1 || tt.fake.calls[0].size < MinImageSize {
				t.Errorf("mkfs calls %+v, want one on a pre-sized image", tt.fake.calls)
			}
			if names := dirNames(t, outDir); !slices.Equal(names, []string{"disk.img"}) {
				t.Errorf("output directory holds %q after the failure, want only the old disk.img", names)
			}
			if b, _ := os.ReadFile(image); string(b) != "old image" {
				t.Errorf("old image replaced by %d bytes", len(b))
			}
		})
	}
}

func TestExecRunner(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fake-mkfs")
	must(t, os.WriteFile(script, []byte("#!/bin/sh\necho \"args: $*\"\necho 'ERROR: boom' >&2\nexit 3\n"), 0o755))
	out, err := ExecRunner(t.Context(), script, "-q", "x y")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("error %v, want exit status 3", err)
	}
	if string(out) != "args: -q x y\nERROR: boom\n" {
		t.Errorf("output %q", out)
	}

	// A program that outlives the deadline is killed.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := ExecRunner(ctx, "sleep", "10"); err == nil {
		t.Error("sleep 10 under a 100ms deadline succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("killing took %v", d)
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	var all []byte
	for i := range 10 {
		c := append([]byte(strconv.Itoa(i)), chunk...)
		all = append(all, c...)
		if n, err := b.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if !bytes.Equal(b.Bytes(), all[len(all)-maxTail:]) {
		t.Errorf("kept %d bytes, not the last %d written", b.Len(), maxTail)
	}
	big := bytes.Repeat([]byte("z"), 2*maxTail)
	big[len(big)-1] = 'e'
	b.Write(big)
	if b.Len() != maxTail || b.Bytes()[maxTail-1] != 'e' {
		t.Errorf("after one large write: %d bytes", b.Len())
	}
}

func TestScanRootfs(t *testing.T) {
	t.Run("no devices", func(t *testing.T) {
		root, content, entries := simpleTree(t)
		must(t, unix.Lsetxattr(filepath.Join(root, "etc/hostname"), "user.test", []byte("value"), 0))
		must(t, os.Chmod(root, 0o750))
		sc, err := scanRootfs(root)
		if err != nil {
			t.Fatal(err)
		}
		if len(sc.devices) != 0 {
			t.Errorf("devices %+v in a tree without any", sc.devices)
		}
		u := sc.usage
		// One name per entry; one inode per entry, less the second name of
		// the hardlink, plus the root directory.
		if u.inodes != int64(entries) || u.names != int64(entries) || u.contentBytes != content {
			t.Errorf("usage %+v; want %d inodes and names, %d content bytes", u, entries, content)
		}
		if u.xattrs != 1 || u.xattrBytes != int64(len("user.test")+len("value")) {
			t.Errorf("xattrs %d, %d bytes; want 1, %d", u.xattrs, u.xattrBytes, len("user.test")+len("value"))
		}
		if sc.rootMode != 0o750 || sc.rootUID != uint32(os.Getuid()) || sc.rootGID != uint32(os.Getgid()) {
			t.Errorf("root %o %d:%d", sc.rootMode, sc.rootUID, sc.rootGID)
		}
	})

	t.Run("device nodes", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: mknod of device nodes")
		}
		root := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(root, "dev/sub"), 0o755))
		mknod := func(rel string, typ uint32, major, minor, perm uint32, uid, gid int) {
			p := filepath.Join(root, rel)
			must(t, unix.Mknod(p, typ|0o600, int(unix.Mkdev(major, minor))))
			must(t, os.Lchown(p, uid, gid))
			must(t, unix.Fchmodat(unix.AT_FDCWD, p, perm, 0)) // after chown, which clears setgid
		}
		mknod("dev/null", unix.S_IFCHR, 1, 3, 0o666, 0, 0)
		mknod("dev/tty5", unix.S_IFCHR, 4, 5, 0o2620, 5, 6)
		mknod("dev/sub/loop7", unix.S_IFBLK, 7, 7, 0o640, 0, 6)
		mknod("dev/big", unix.S_IFBLK, 259, 1048575, 0o600, 1234, 5678) // 12-bit major, 20-bit minor
		must(t, os.Link(filepath.Join(root, "dev/null"), filepath.Join(root, "null2")))
		must(t, unix.Mkfifo(filepath.Join(root, "dev/fifo"), 0o600))
		must(t, os.Symlink("/dev/null", filepath.Join(root, "dev/link")))

		sc, err := scanRootfs(root)
		if err != nil {
			t.Fatal(err)
		}
		want := []DeviceNode{
			{Path: "/dev/big", Type: "b", Major: 259, Minor: 1048575, Mode: 0o600, UID: 1234, GID: 5678},
			{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, Mode: 0o666},
			{Path: "/dev/sub/loop7", Type: "b", Major: 7, Minor: 7, Mode: 0o640, GID: 6},
			{Path: "/dev/tty5", Type: "c", Major: 4, Minor: 5, Mode: 0o2620, UID: 5, GID: 6},
			{Path: "/null2", Type: "c", Major: 1, Minor: 3, Mode: 0o666},
		}
		if !slices.Equal(sc.devices, want) {
			t.Errorf("devices\n got %+v\nwant %+v", sc.devices, want)
		}
	})

	t.Run("bind mount inside the rootfs", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: bind mount")
		}
		root := t.TempDir()
		mkfile(t, filepath.Join(root, "a/file"), 10, false)
		must(t, os.Mkdir(filepath.Join(root, "b"), 0o755))
		if err := unix.Mount(filepath.Join(root, "a"), filepath.Join(root, "b"), "", unix.MS_BIND, ""); err != nil {
			t.Skipf("bind mount: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(filepath.Join(root, "b"), unix.MNT_DETACH) })
		_, err := scanRootfs(root)
		if !errors.Is(err, ErrInodeCollision) || !strings.Contains(err.Error(), filepath.Join(root, "b")) {
			t.Errorf("error %v, want an inode collision naming %s", err, filepath.Join(root, "b"))
		}
	})

	t.Run("another filesystem inside the rootfs", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: mount tmpfs")
		}
		root := t.TempDir()
		must(t, os.Mkdir(filepath.Join(root, "t1"), 0o755))
		must(t, os.Mkdir(filepath.Join(root, "t2"), 0o755))
		for _, d := range []string{"t1", "t2"} {
			if err := unix.Mount("tmpfs", filepath.Join(root, d), "tmpfs", 0, "size=1m"); err != nil {
				t.Skipf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() { unix.Unmount(filepath.Join(root, d), unix.MNT_DETACH) })
		}
		// Two fresh tmpfs number their first files alike.
		mkfile(t, filepath.Join(root, "t1/f"), 1, false)
		mkfile(t, filepath.Join(root, "t2/f"), 1, false)
		_, err := scanRootfs(root)
		if !errors.Is(err, ErrInodeCollision) || !strings.Contains(err.Error(), "different filesystems") {
			t.Errorf("error %v, want an inode collision across filesystems", err)
		}
	})
}

// TestBuildDiskLargeXattr checks the largest xattr btrfs holds against
// mkfs.btrfs, and that a larger one is refused before mkfs.btrfs runs (6.2
// hits a BUG_ON and aborts on it).
func TestBuildDiskLargeXattr(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount tmpfs, trusted.* xattrs")
	}
	mkfs, err := exec.LookPath(DefaultMkfs)
	if err != nil {
		t.Skip("mkfs.btrfs not installed")
	}
	const name = "trusted.big"
	for _, tt := range []struct {
		size int // name and value
		ok   bool
	}{{maxXattrSize, true}, {maxXattrSize + 1, false}} {
		t.Run(strconv.Itoa(tt.size), func(t *testing.T) {
			// ext4 holds no xattr this large; tmpfs does.
			root := t.TempDir()
			if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=4m"); err != nil {
				t.Skipf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
			p := filepath.Join(root, "f")
			mkfile(t, p, 10, false)
			value := bytes.Repeat([]byte("x"), tt.size-len(name))
			if err := unix.Lsetxattr(p, name, value, 0); err != nil {
				t.Skipf("setxattr %d bytes on tmpfs: %v", len(value), err)
			}
			outDir := t.TempDir()
			image := filepath.Join(outDir, "disk.img")
			_, err := BuildDisk(t.Context(), root, image, DiskOptions{Mkfs: mkfs})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				checkBtrfs(t, image)
				return
			}
			if !errors.Is(err, ErrXattrTooLarge) || !strings.Contains(err.Error(), strconv.Quote(p)) {
				t.Errorf("error %v, want ErrXattrTooLarge naming %q", err, p)
			}
			if names := dirNames(t, outDir); len(names) != 0 {
				t.Errorf("left behind %q", names)
			}
		})
	}
}

// TestBuildDiskUnprivileged checks, as an ordinary user, that mkfs.btrfs
// needs no root and that what it could not read is reported before it runs.
// Run as root, it re-runs itself as nobody.
func TestBuildDiskUnprivileged(t *testing.T) {
	if os.Geteuid() == 0 {
		rerunAsNobody(t)
		return
	}
	mkfs, mkfsErr := exec.LookPath(DefaultMkfs)

	t.Run("build", func(t *testing.T) {
		if mkfsErr != nil {
			t.Skip("mkfs.btrfs not installed")
		}
		root, _, _ := simpleTree(t)
		// An empty file mkfs.btrfs never opens may be unreadable.
		mkfile(t, filepath.Join(root, "etc/empty-secret"), 0, false)
		must(t, os.Chmod(filepath.Join(root, "etc/empty-secret"), 0))
		image := filepath.Join(t.TempDir(), "disk.img")
		info, err := BuildDisk(t.Context(), root, image, DiskOptions{Mkfs: mkfs})
		if err != nil {
			t.Fatal(err)
		}
		checkBtrfs(t, info.Path)
	})

	tests := []struct {
		name  string
		setup func(t *testing.T, root string) string // returns the path that must be named
	}{
		{"unreadable file", func(t *testing.T, root string) string {
			p := filepath.Join(root, "etc/shadow")
			mkfile(t, p, 100, false)
			must(t, os.Chmod(p, 0o200))
			return p
		}},
		{"unreadable directory", func(t *testing.T, root string) string {
			p := filepath.Join(root, "var/secret")
			mkfile(t, filepath.Join(p, "f"), 1, false)
			must(t, os.Chmod(p, 0o300))
			t.Cleanup(func() { os.Chmod(p, 0o700) }) // let t.TempDir remove it
			return p
		}},
		{"directory that cannot be entered", func(t *testing.T, root string) string {
			p := filepath.Join(root, "var/noexec")
			mkfile(t, filepath.Join(p, "f"), 1, false)
			must(t, os.Chmod(p, 0o600))
			t.Cleanup(func() { os.Chmod(p, 0o700) }) // let t.TempDir remove it
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, _, _ := simpleTree(t)
			bad := tt.setup(t, root)
			outDir := t.TempDir()
			f := &fakeMkfs{}
			_, err := BuildDisk(t.Context(), root, filepath.Join(outDir, "disk.img"), DiskOptions{Run: f.run})
			if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), strconv.Quote(bad)) {
				t.Errorf("error %v, want ErrUnreadable naming %q", err, bad)
			}
			if len(f.calls) != 0 {
				t.Errorf("mkfs ran")
			}
			if names := dirNames(t, outDir); len(names) != 0 {
				t.Errorf("left behind %q", names)
			}
			// The check is needed: mkfs.btrfs itself fails on such a tree.
			if mkfsErr == nil {
				img := filepath.Join(outDir, "direct.img")
				must(t, os.WriteFile(img, nil, 0o600))
				must(t, os.Truncate(img, 256<<20))
				out, err := ExecRunner(t.Context(), mkfs, mkfsArgs(root, img)...)
				if err == nil {
					t.Errorf("mkfs.btrfs succeeded on a tree with %s", bad)
				} else {
					t.Logf("mkfs.btrfs on it: %v: %s", err, outputTail(out))
				}
			}
		})
	}
}

// rerunAsNobody runs the calling test in a copy of the test binary as user
// and group 65534.
func rerunAsNobody(t *testing.T) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go build directory is private to root: copy the binary out.
	dir, err := os.MkdirTemp("", "bundle-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	must(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "bundle.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(bin, data, 0o755))

	args := []string{"-test.run=^" + t.Name() + "$", "-test.count=1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("test as nobody: %v", err)
	}
	if !bytes.Contains(out, []byte("PASS")) {
		t.Fatal("test as nobody did not pass")
	}
}

var (
	blockGroupItem = regexp.MustCompile(`^\s*item \d+ key \(\d+ BLOCK_GROUP_ITEM (\d+)\)`)
	blockGroupUsed = regexp.MustCompile(`^\s*block group used (\d+) chunk_objectid \d+ flags (\S+)`)
)

// spaceNeeded measures what the content of a btrfs image takes from the
// device: the 1 MiB reserved for the superblock, every system and metadata
// chunk in full, and the used part of the data chunks. (mkfs.btrfs 6.2
// allocates data chunks ahead, up to tens of MiB of them empty: that space
// stays free for data, so it does not count.) It reads the block group items
// with btrfs inspect-internal dump-tree.
func spaceNeeded(t *testing.T, image string) int64 {
	t.Helper()
	btrfs, err := exec.LookPath("btrfs")
	if err != nil {
		t.Skip("btrfs (btrfs-progs) not installed")
	}
	out, err := exec.Command(btrfs, "inspect-internal", "dump-tree", "-t", "extent", image).Output()
	if err != nil {
		t.Fatalf("dump-tree %s: %v", image, err)
	}
	need := int64(1 << 20)
	groups := 0
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		// item 2 key (5242880 BLOCK_GROUP_ITEM 8388608) itemoff 16202 itemsize 24
		//         block group used 3522560 chunk_objectid 256 flags METADATA|single
		m := blockGroupItem.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		u := blockGroupUsed.FindStringSubmatch(lines[i+1])
		if u == nil {
			t.Fatalf("dump-tree %s: cannot parse %q after %q", image, lines[i+1], lines[i])
		}
		length, _ := strconv.ParseInt(m[1], 10, 64)
		used, _ := strconv.ParseInt(u[1], 10, 64)
		groups++
		if strings.HasPrefix(u[2], "DATA") {
			need += used
		} else {
			need += length
		}
	}
	if groups == 0 {
		t.Fatalf("dump-tree %s: no block groups in\n%s", image, out)
	}
	return need
}

// checkBtrfs checks an image with btrfs check, when btrfs is installed.
func checkBtrfs(t *testing.T, image string) {
	t.Helper()
	btrfs, err := exec.LookPath("btrfs")
	if err != nil {
		return
	}
	if out, err := exec.Command(btrfs, "check", "--readonly", image).CombinedOutput(); err != nil {
		t.Errorf("btrfs check %s: %v\n%s", image, err, out)
	}
}

// TestBuildDiskMkfs builds real images (no root needed) and checks that the
// size estimate covers what mkfs.btrfs allocated, so mkfs never runs out of
// space and the requested free space is really free.
func TestBuildDiskMkfs(t *testing.T) {
	mkfs, err := exec.LookPath(DefaultMkfs)
	if err != nil {
		t.Skip("mkfs.btrfs not installed")
	}
	trees := []struct {
		name string
		make func(t *testing.T, root string)
	}{
		{"empty", func(t *testing.T, root string) {}},
		{"20000 files of 100 bytes", func(t *testing.T, root string) {
			for i := range 20000 {
				mkfile(t, filepath.Join(root, fmt.Sprintf("d%03d/f%05d", i/200, i)), 100, false)
			}
		}},
		{"10000 files of 3000 bytes", func(t *testing.T, root string) {
			for i := range 10000 {
				mkfile(t, filepath.Join(root, fmt.Sprintf("d%03d/f%05d", i/200, i)), 3000, false)
			}
		}},
		{"5000 empty files with 250-byte names and xattrs", func(t *testing.T, root string) {
			for i := range 5000 {
				p := filepath.Join(root, fmt.Sprintf("d%03d/%s%05d", i/200, strings.Repeat("n", 245), i))
				mkfile(t, p, 0, false)
				must(t, unix.Lsetxattr(p, "user.attr", bytes.Repeat([]byte("v"), 200), 0))
			}
		}},
		{"mixed sizes up to 3 MiB", func(t *testing.T, root string) {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range 3000 {
				size := int64(r.ExpFloat64() * 20000)
				if i%100 == 0 {
					size = r.Int64N(3 << 20)
				}
				mkfile(t, filepath.Join(root, fmt.Sprintf("d%02d/f%05d", i/100, i)), size, false)
			}
		}},
	}
	// BUNDLE_TEST_TREES=dir1:dir2 adds existing trees (read only).
	var extra []string
	if v := os.Getenv("BUNDLE_TEST_TREES"); v != "" {
		extra = strings.Split(v, ":")
	}
	for _, dir := range extra {
		trees = append(trees, struct {
			name string
			make func(t *testing.T, root string)
		}{dir, nil})
	}
	for _, tt := range trees {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.name != "empty" {
				t.Skip("short mode")
			}
			root := tt.name
			if tt.make != nil {
				root = t.TempDir()
				tt.make(t, root)
			}
			sc, err := scanRootfs(root)
			if err != nil {
				t.Fatal(err)
			}
			// The model itself, before rounding and the mkfs.btrfs minimum.
			estimate := sc.usage.estimate()
			for _, free := range []int64{-1, 0} {
				image := filepath.Join(t.TempDir(), "disk.img")
				start := time.Now()
				info, err := BuildDisk(t.Context(), root, image, DiskOptions{FreeSpace: free, Mkfs: mkfs})
				if err != nil {
					t.Fatalf("FreeSpace %d: %v", free, err)
				}
				took := time.Since(start)
				need := spaceNeeded(t, image)
				if free < 0 {
					t.Logf("%d files, %d content bytes: estimate %d, mkfs.btrfs needed %d (estimate/needed %.2f), image %d, %v",
						info.Files, info.ContentBytes, estimate, need, float64(estimate)/float64(need), info.Size, took)
					if need > estimate {
						t.Errorf("mkfs.btrfs needed %d bytes, above the estimate %d", need, estimate)
					}
				}
				// mkfs.btrfs may enlarge the image to its own estimate, never shrink it.
				if want := imageSize(sc.usage, free); info.Size < want {
					t.Errorf("FreeSpace %d: image %d bytes, planned %d", free, info.Size, want)
				}
				if free == 0 && info.Size-need < DefaultFreeSpace {
					t.Errorf("only %d bytes free, want at least %d", info.Size-need, DefaultFreeSpace)
				}
				checkBtrfs(t, image)
			}
		})
	}
}

// capV2 is a VFS_CAP_REVISION_2 security.capability value granting
// cap_net_bind_service and cap_net_raw, effective (what setcap
// cap_net_bind_service,cap_net_raw+ep writes).
func capV2() []byte {
	v := make([]byte, 20)
	binary.LittleEndian.PutUint32(v[0:], 0x02000000|0x1)                                   // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(v[4:], 1<<unix.CAP_NET_BIND_SERVICE|1<<unix.CAP_NET_RAW) // permitted[0]
	return v
}

// TestBuildDiskPreservesAttributes builds an image from a tree holding every
// kind of file and checks each property in the mounted image.
//
// Measured with btrfs-progs 6.2: owners, modes with setuid/setgid/sticky,
// security.capability and user.* xattrs, hardlinks, symlinks, fifos and
// sockets survive; device nodes are written with numbers 0,0; timestamps
// lose their nanoseconds; the root directory becomes 0755 0:0 without
// xattrs; hardlink counts are copied from the source, so a file linked from
// outside the rootfs keeps a too high count.
func TestBuildDiskPreservesAttributes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mknod, security.capability and mount")
	}
	mkfs, err := exec.LookPath(DefaultMkfs)
	if err != nil {
		t.Skip("mkfs.btrfs not installed")
	}
	root := t.TempDir()
	p := func(rel string) string { return filepath.Join(root, rel) }
	mkfile(t, p("owned"), 10, false)
	must(t, os.Chown(p("owned"), 1234, 5678))
	mkfile(t, p("bin/suid"), 5000, false)
	must(t, unix.Chmod(p("bin/suid"), 0o4755)) // os.Chmod would drop the bits
	mkfile(t, p("bin/sgid"), 50, false)
	must(t, unix.Chmod(p("bin/sgid"), 0o2711))
	must(t, os.Mkdir(p("tmp"), 0o755))
	must(t, unix.Chmod(p("tmp"), 0o1777))
	mkfile(t, p("bin/ping"), 3000, false)
	must(t, unix.Setxattr(p("bin/ping"), "security.capability", capV2(), 0))
	must(t, unix.Setxattr(p("owned"), "user.note", []byte("hello xattr"), 0))
	mkfile(t, p("hard1"), 6000, false)
	must(t, os.Link(p("hard1"), p("bin/hard2")))
	must(t, os.Symlink("bin/suid", p("link")))
	must(t, os.Lchown(p("link"), 7, 8))
	must(t, unix.Mkfifo(p("fifo"), 0))
	must(t, unix.Chmod(p("fifo"), 0o640))
	must(t, os.MkdirAll(p("dev"), 0o755))
	must(t, unix.Mknod(p("dev/null"), unix.S_IFCHR, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(p("dev/loop0"), unix.S_IFBLK, int(unix.Mkdev(7, 0))))
	must(t, unix.Chmod(p("dev/null"), 0o666)) // not subject to the umask
	must(t, unix.Chmod(p("dev/loop0"), 0o660))
	must(t, os.Chown(p("dev/loop0"), 0, 6))
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
	must(t, os.Chtimes(p("owned"), mtime, mtime))
	must(t, os.Chmod(root, 0o711))
	must(t, os.Chown(root, 42, 43))

	image := filepath.Join(t.TempDir(), "disk.img")
	info, err := BuildDisk(t.Context(), root, image, DiskOptions{Mkfs: mkfs})
	if err != nil {
		t.Fatal(err)
	}
	wantDevs := []DeviceNode{
		{Path: "/dev/loop0", Type: "b", Major: 7, Minor: 0, Mode: 0o660, GID: 6},
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, Mode: 0o666},
	}
	if !slices.Equal(info.Devices, wantDevs) {
		t.Errorf("Devices %+v, want %+v", info.Devices, wantDevs)
	}
	if info.RootMode != 0o711 || info.RootUID != 42 || info.RootGID != 43 {
		t.Errorf("root %o %d:%d, want 711 42:43", info.RootMode, info.RootUID, info.RootGID)
	}
	checkBtrfs(t, image)

	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop,ro", image, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount the image here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	m := func(rel string) string { return filepath.Join(mnt, rel) }
	stat := func(rel string) unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(m(rel), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	check := func(rel string, typ, perm uint32, uid, gid uint32) unix.Stat_t {
		t.Helper()
		st := stat(rel)
		if st.Mode&unix.S_IFMT != typ || st.Mode&0o7777 != perm || st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: mode %o %d:%d, want %o %d:%d", rel, st.Mode, st.Uid, st.Gid, typ|perm, uid, gid)
		}
		return st
	}
	check("owned", unix.S_IFREG, 0o644, 1234, 5678)
	check("bin/suid", unix.S_IFREG, 0o4755, 0, 0)
	check("bin/sgid", unix.S_IFREG, 0o2711, 0, 0)
	check("tmp", unix.S_IFDIR, 0o1777, 0, 0)
	check("link", unix.S_IFLNK, 0o777, 7, 8)
	check("fifo", unix.S_IFIFO, 0o640, 0, 0)
	null := check("dev/null", unix.S_IFCHR, 0o666, 0, 0)
	loop := check("dev/loop0", unix.S_IFBLK, 0o660, 0, 6)
	// btrfs-progs 6.2 writes every device node as 0,0 (measured: both are
	// 0,0 here); the guest agent recreates them from DiskInfo.Devices.
	t.Logf("device numbers in the image: /dev/null %d,%d, /dev/loop0 %d,%d (source 1,3 and 7,0)",
		unix.Major(null.Rdev), unix.Minor(null.Rdev), unix.Major(loop.Rdev), unix.Minor(loop.Rdev))

	for _, rel := range []string{"owned", "bin/suid", "bin/ping", "hard1"} {
		src, err := os.ReadFile(p(rel))
		must(t, err)
		got, err := os.ReadFile(m(rel))
		must(t, err)
		if !bytes.Equal(src, got) {
			t.Errorf("%s: content differs", rel)
		}
	}
	if target, err := os.Readlink(m("link")); err != nil || target != "bin/suid" {
		t.Errorf("link -> %q, %v; want bin/suid", target, err)
	}
	h1, h2 := stat("hard1"), stat("bin/hard2")
	if h1.Ino != h2.Ino || h1.Nlink != 2 {
		t.Errorf("hardlinks: inodes %d, %d, nlink %d; want one inode with nlink 2", h1.Ino, h2.Ino, h1.Nlink)
	}
	xattr := func(rel, name string) []byte {
		t.Helper()
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(m(rel), name, buf)
		if err != nil {
			t.Errorf("%s: xattr %s: %v", rel, name, err)
			return nil
		}
		return buf[:n]
	}
	if got := xattr("bin/ping", "security.capability"); !bytes.Equal(got, capV2()) {
		t.Errorf("security.capability %x, want %x", got, capV2())
	}
	if got := xattr("owned", "user.note"); string(got) != "hello xattr" {
		t.Errorf("user.note %q", got)
	}
	// Whole seconds of the mtime survive, the nanoseconds do not.
	if st := stat("owned"); st.Mtim.Sec != mtime.Unix() {
		t.Errorf("mtime %d, want %d", st.Mtim.Sec, mtime.Unix())
	} else {
		t.Logf("mtime nanoseconds in the image: %d (source %d)", st.Mtim.Nsec, mtime.Nanosecond())
	}
	// What mkfs.btrfs does with the root directory: DiskInfo carries the
	// source's mode and owner for the guest to apply.
	rt := stat(".")
	t.Logf("image root directory: mode %o, owner %d:%d (source 711 42:43)", rt.Mode&0o7777, rt.Uid, rt.Gid)
}

// BenchmarkBuildDisk builds an image from ~2000 small files; MB/s counts the
// files' content.
func BenchmarkBuildDisk(b *testing.B) {
	mkfs, err := exec.LookPath(DefaultMkfs)
	if err != nil {
		b.Skip("mkfs.btrfs not installed")
	}
	root, content := benchTree(b)
	out := b.TempDir()
	b.SetBytes(content)
	b.ResetTimer()
	for i := range b.N {
		image := filepath.Join(out, fmt.Sprintf("disk%d.img", i))
		if _, err := BuildDisk(b.Context(), root, image, DiskOptions{Mkfs: mkfs}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(image)
		b.StartTimer()
	}
}

// benchTree is the benchmarks' rootfs: 2000 files of up to 16 KiB in 20
// directories, the same every run; content is their total size.
func benchTree(b *testing.B) (root string, content int64) {
	root = b.TempDir()
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		size := r.Int64N(16 << 10)
		content += size
		mkfile(b, filepath.Join(root, fmt.Sprintf("d%02d/f%04d", i/100, i)), size, false)
	}
	return root, content
}
