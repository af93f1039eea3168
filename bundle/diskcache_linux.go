package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// DiskCache keeps built images by a content key: the identity of a rootfs
// that cannot change, such as the read-only layers under a fresh overlay
// snapshot. A container whose rootfs has a known key gets a sparse copy
// (a reflink where the filesystem has them) instead of a mkfs.btrfs run.
type DiskCache struct {
	// Dir holds <hash>.img and <hash>.json (the image's DiskInfo).
	Dir string
	// Max is how many images the cache keeps (least recently used go
	// first); 0 means DefaultDiskCacheMax.
	Max int
}

// DefaultDiskCacheMax bounds a DiskCache's images.
const DefaultDiskCacheMax = 16

// BuildFunc builds an image from a rootfs (BuildDisk).
type BuildFunc func(ctx context.Context, rootfs, image string, opts DiskOptions) (*DiskInfo, error)

// Build makes image from rootfs: a copy of the cached image for key when
// there is one (hit), else build's, which is then kept for key. An empty
// key bypasses the cache. A cache that fails costs a build, never an
// error of the image.
func (c DiskCache) Build(ctx context.Context, build BuildFunc, rootfs, image, key string, opts DiskOptions) (info *DiskInfo, hit bool, err error) {
	if key == "" || c.Dir == "" {
		info, err = build(ctx, rootfs, image, opts)
		return info, false, err
	}
	h := sha256.Sum256([]byte(key + "\x00" + strconv.FormatInt(opts.FreeSpace, 10)))
	base := filepath.Join(c.Dir, hex.EncodeToString(h[:16]))
	if info, err := c.lookup(ctx, base, image, opts); err == nil {
		return info, true, nil
	}
	info, err = build(ctx, rootfs, image, opts)
	if err != nil {
		return nil, false, err
	}
	c.store(base, image, info)
	return info, false, nil
}

// DefaultBtrfstune is the btrfstune program.
const DefaultBtrfstune = "btrfstune"

// lookup copies the cached image at base into image and gives the copy a
// filesystem UUID of its own (`btrfstune -m`, the superblock only): Linux
// before 6.7 refuses to mount a second btrfs with the same UUID, as two
// containers of one image in a pod's VM would be.
func (c DiskCache) lookup(ctx context.Context, base, image string, opts DiskOptions) (*DiskInfo, error) {
	b, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, err
	}
	var info DiskInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, err
	}
	if err := CopySparse(image, base+".img"); err != nil {
		return nil, err
	}
	run := opts.Run
	if run == nil {
		run = ExecRunner
	}
	if out, err := run(ctx, DefaultBtrfstune, "-m", image); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("giving %q a filesystem UUID of its own: %w: %s", image, err, out)
	}
	now := time.Now()
	os.Chtimes(base+".json", now, now) // recently used
	info.Path = image
	return &info, nil
}

// store keeps a copy of image for base, then trims the cache.
func (c DiskCache) store(base, image string, info *DiskInfo) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return
	}
	if err := CopySparse(base+".img", image); err != nil {
		return
	}
	kept := *info
	kept.Path = ""
	b, err := json.Marshal(&kept)
	if err != nil {
		return
	}
	// The description last: an image without one is never used.
	tmp := base + ".json.tmp"
	if os.WriteFile(tmp, b, 0o600) != nil || os.Rename(tmp, base+".json") != nil {
		os.Remove(tmp)
		os.Remove(base + ".img")
		return
	}
	c.trim()
}

// trim removes the least recently used images beyond Max.
func (c DiskCache) trim() {
	max := c.Max
	if max <= 0 {
		max = DefaultDiskCacheMax
	}
	descs, _ := filepath.Glob(filepath.Join(c.Dir, "*.json"))
	if len(descs) <= max {
		return
	}
	mtime := func(p string) time.Time {
		fi, err := os.Stat(p)
		if err != nil {
			return time.Time{}
		}
		return fi.ModTime()
	}
	sort.Slice(descs, func(i, j int) bool { return mtime(descs[i]).Before(mtime(descs[j])) })
	for _, d := range descs[:len(descs)-max] {
		os.Remove(d)
		os.Remove(d[:len(d)-len(".json")] + ".img")
	}
}

// CopySparse copies the file src to dst (replaced through a temporary
// file): a reflink where the filesystem can, else the data extents only,
// so a sparse image stays sparse.
func CopySparse(dst, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) != nil {
		if err := out.Truncate(fi.Size()); err != nil {
			return fmt.Errorf("copying %q: %w", src, err)
		}
		if err := copyExtents(out, in, fi.Size()); err != nil {
			return fmt.Errorf("copying %q: %w", src, err)
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), dst)
}

// copyExtents copies the data regions of in (SEEK_DATA/SEEK_HOLE) to the
// same offsets of out.
func copyExtents(out, in *os.File, size int64) error {
	var off int64
	for off < size {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}
