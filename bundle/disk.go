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
	"time"
)

const (
	// DefaultFreeSpace is the free space BuildDisk leaves in an image when
	// DiskOptions.FreeSpace is zero.
	DefaultFreeSpace int64 = 256 << 20

	// MinImageSize is the smallest image mkfs.btrfs 6.2 accepts with
	// "-m single -d single" and the default 16 KiB nodes (measured: 45 MiB
	// works, 44 MiB fails with "minimum size for each btrfs device is
	// 47185920").
	MinImageSize int64 = 45 << 20

	// DefaultMkfs is the mkfs.btrfs program BuildDisk runs when
	// DiskOptions.Mkfs is empty (looked up in PATH).
	DefaultMkfs = "mkfs.btrfs"
)

// Runner runs an external program to completion and returns its combined
// standard output and standard error. It must stop the program when ctx is
// done.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// ExecRunner is the Runner that executes name with os/exec.
func ExecRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out tailBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Do not wait forever for a grandchild that holds the output pipe.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// tailBuffer keeps the last maxTail bytes written to it.
type tailBuffer struct{ bytes.Buffer }

const maxTail = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > maxTail {
		p = p[len(p)-maxTail:]
	}
	if over := t.Len() + len(p) - maxTail; over > 0 {
		t.Next(over)
	}
	t.Buffer.Write(p)
	return n, nil
}

// DiskOptions tunes BuildDisk. The zero value is ready to use.
type DiskOptions struct {
	// FreeSpace is the space to leave free in the image beyond the estimated
	// content. Zero means DefaultFreeSpace; a negative value means none.
	// mkfs.btrfs 6.2 enlarges an image that is smaller than its own (very
	// generous) estimate of the content, so the image can end up larger.
	FreeSpace int64
	// Mkfs is the mkfs.btrfs program; empty means DefaultMkfs.
	Mkfs string
	// Run runs mkfs.btrfs; nil means ExecRunner.
	Run Runner
	// Timeout bounds the mkfs.btrfs run. Zero means one minute plus one
	// second per 10 MB of content.
	Timeout time.Duration
}

// DiskInfo describes a built image.
type DiskInfo struct {
	// Path is the absolute path of the image.
	Path string
	// Size is the size of the image file in bytes (it is sparse).
	Size int64
	// ContentBytes is the size of the regular files' data, each hardlinked
	// file counted once.
	ContentBytes int64
	// Files is the number of entries below the root directory (files,
	// directories, symlinks, fifos, sockets and device nodes).
	Files int
	// Devices are the device nodes in the rootfs, in walk (lexical) order.
	// mkfs.btrfs 6.2 writes them with numbers 0,0: whoever mounts the image
	// recreates them from this list.
	Devices []DeviceNode
	// RootMode (permission, setuid, setgid and sticky bits), RootUID and
	// RootGID describe the rootfs directory itself. mkfs.btrfs 6.2 makes the
	// image's root directory 0755 root:root whatever the source says.
	RootMode, RootUID, RootGID uint32
}

// DeviceNode is a character or block device found in the rootfs; the fields
// match agentapi.DeviceNode.
type DeviceNode struct {
	// Path is absolute inside the rootfs, e.g. /dev/null.
	Path string
	// Type is "c" (character) or "b" (block).
	Type         string
	Major, Minor uint32
	// Mode holds the permission bits plus setuid/setgid/sticky, no type bits.
	Mode     uint32
	UID, GID uint32
}

// BuildDisk makes a btrfs image at image holding the tree at rootfs. It walks
// rootfs first, to size the image, to collect device nodes and to fail early
// and clearly on what mkfs.btrfs could not copy; then it runs
//
//	mkfs.btrfs -q -f -m single -d single --rootdir ROOTFS TMP
//
// on a pre-sized sparse file TMP next to image, and renames TMP to image
// (replacing it) once mkfs.btrfs succeeded. On failure nothing is left behind.
func BuildDisk(ctx context.Context, rootfs, image string, opts DiskOptions) (info *DiskInfo, err error) {
	if rootfs == "" || image == "" {
		return nil, errors.New("building disk image: rootfs and image paths must not be empty")
	}
	if rootfs, err = filepath.Abs(rootfs); err != nil {
		return nil, fmt.Errorf("building disk image: rootfs: %w", err)
	}
	// mkfs.btrfs resolves the source directory with realpath(3); walk the
	// same tree.
	if rootfs, err = filepath.EvalSymlinks(rootfs); err != nil {
		return nil, fmt.Errorf("building disk image: rootfs: %w", err)
	}
	if image, err = filepath.Abs(image); err != nil {
		return nil, fmt.Errorf("building disk image: image: %w", err)
	}
	if rel, rerr := filepath.Rel(rootfs, image); rerr == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("building disk image %q: it must not be inside the rootfs %q", image, rootfs)
	}

	sc, err := scanRootfs(rootfs)
	if err != nil {
		return nil, fmt.Errorf("building disk image from %q: %w", rootfs, err)
	}
	size := imageSize(sc.usage, opts.FreeSpace)

	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("building disk image %q: %w", image, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(image), "."+filepath.Base(image)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("building disk image %q: %w", image, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			os.Remove(tmpName)
		}
	}()
	// A sparse file of the planned size: mkfs.btrfs uses the file's size as
	// the filesystem size.
	if err := tmp.Truncate(size); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("building disk image %q: sizing %q to %d bytes: %w", image, tmpName, size, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("building disk image %q: %w", image, err)
	}

	if err := runMkfs(ctx, opts, sc.usage.contentBytes, rootfs, tmpName); err != nil {
		return nil, fmt.Errorf("building disk image %q: %w", image, err)
	}

	// Make the image durable before it appears under its final name: a torn
	// image must never look like a finished one.
	f, err := os.OpenFile(tmpName, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("building disk image %q: %w", image, err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("building disk image %q: syncing %q: %w", image, tmpName, err)
	}
	if err := os.Rename(tmpName, image); err != nil {
		return nil, fmt.Errorf("building disk image %q: %w", image, err)
	}
	return &DiskInfo{
		Path:         image,
		Size:         fi.Size(),
		ContentBytes: sc.usage.contentBytes,
		Files:        int(sc.usage.names),
		Devices:      sc.devices,
		RootMode:     sc.rootMode,
		RootUID:      sc.rootUID,
		RootGID:      sc.rootGID,
	}, nil
}

// mkfsArgs are the arguments of the mkfs.btrfs run: quiet, overwrite the
// (empty) file, single copies of data and metadata (the image lives on one
// host file, DUP metadata would only double its size), fill from rootfs.
func mkfsArgs(rootfs, image string) []string {
	return []string{"-q", "-f", "-m", "single", "-d", "single", "--rootdir", rootfs, image}
}

var errMkfsTimeout = errors.New("timed out")

func runMkfs(ctx context.Context, opts DiskOptions, contentBytes int64, rootfs, image string) error {
	name := opts.Mkfs
	if name == "" {
		name = DefaultMkfs
	}
	run := opts.Run
	if run == nil {
		run = ExecRunner
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Minute + time.Duration(contentBytes/10e6)*time.Second
	}
	runCtx, cancel := context.WithTimeoutCause(ctx, timeout, errMkfsTimeout)
	defer cancel()

	out, err := run(runCtx, name, mkfsArgs(rootfs, image)...)
	if err == nil {
		return nil
	}
	if context.Cause(runCtx) == errMkfsTimeout {
		err = fmt.Errorf("timed out after %v", timeout)
	} else if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	msg := fmt.Sprintf("%s --rootdir %q %q", name, rootfs, image)
	if bytes.Contains(out, []byte("No space left on device")) {
		// Said first, and testable (errors.Is ENOSPC): the rest of
		// mkfs.btrfs's output is a cascade of the same failure.
		return fmt.Errorf("%w: the filesystem of %s is full: %w: %s: %w", ErrMkfs, filepath.Dir(image), syscall.ENOSPC, msg, err)
	}
	if t := outputTail(out); t != "" {
		return fmt.Errorf("%w: %s: %w: %s", ErrMkfs, msg, err, t)
	}
	return fmt.Errorf("%w: %s: %w", ErrMkfs, msg, err)
}

// outputTail returns the last lines of a program's output for an error
// message, leaving out mkfs.btrfs's note about changed defaults.
func outputTail(out []byte) string {
	const maxLines, maxBytes = 8, 2000
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "NOTE: several default settings") ||
			strings.HasPrefix(l, "this does not affect your deployments") ||
			(strings.HasPrefix(l, "- ") && strings.Contains(l, "(-")) {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	s := strings.Join(lines, "; ")
	if len(s) > maxBytes {
		s = "..." + s[len(s)-maxBytes:]
	}
	return s
}
