package guestagent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// system is what the service does to the guest apart from starting
// processes. osSystem is the real one; tests use fakeSystem.
type system interface {
	procinit.LinkReader
	Stat(path string) (fs.FileInfo, error)
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	// MountSetattr sets and clears MOUNT_ATTR_* on the mount at target and,
	// with AT_RECURSIVE, every mount below it (mount_setattr(2)).
	MountSetattr(target string, recursive bool, set, clr uint64) error
	MkdirAll(path string, perm fs.FileMode) error
	// CreateFile creates an empty file unless path exists.
	CreateFile(path string) error
	// WriteFile replaces the content of a regular file (never through a
	// symlink).
	WriteFile(path string, data []byte) error
	// Remove removes path; a missing path is not an error.
	Remove(path string) error
	Mknod(path string, mode uint32, dev uint64) error
	Chmod(path string, mode uint32) error
	Lchown(path string, uid, gid int) error
	Symlink(target, link string) error
	// CopyTree copies the contents of directory src into directory dst,
	// keeping modes, owners and symlinks (runc's tmpcopyup).
	CopyTree(src, dst string) error
	Sethostname(name string) error
	Sync()
	Kill(pid int, sig unix.Signal) error
	// KillAll sends sig to every process but the caller and PID 1 (kill(2)
	// of pid -1); none to signal is not an error.
	KillAll(sig unix.Signal) error
	// HasChildren reports whether the caller has a child, running or not
	// yet reaped (waitid(2) with WNOHANG|WNOWAIT, which reaps nothing).
	HasChildren() (bool, error)
	ListProcs() ([]procInfo, error)
	PowerOff() error
	// SetClock sets the wall clock (CLOCK_REALTIME).
	SetClock(t time.Time) error
	// BootTime is the wall clock less CLOCK_BOOTTIME: the moment from
	// which /proc/PID/stat's starttime counts.
	BootTime() (time.Time, error)
	// Reseed credits entropy to the kernel's input pool and reseeds its
	// random generator from it at once (RNDADDENTROPY, RNDRESEEDCRNG).
	Reseed(entropy []byte) error
	// ReadFile reads a small file (sysfs attributes).
	ReadFile(path string) ([]byte, error)
	// ReadDir lists the names in a directory.
	ReadDir(path string) ([]string, error)
	// FlushBuffers drops a block device's cached pages (BLKFLSBUF): a disk
	// slot reused for another image must not show the old one's blocks.
	FlushBuffers(dev string) error
}

// osSystem is the guest itself.
type osSystem struct{}

func (osSystem) Lstat(p string) (fs.FileInfo, error) { return os.Lstat(p) }
func (osSystem) Stat(p string) (fs.FileInfo, error)  { return os.Stat(p) }
func (osSystem) Readlink(p string) (string, error)   { return os.Readlink(p) }

func (osSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &os.PathError{Op: "mount", Path: target, Err: err}
	}
	return nil
}

func (osSystem) Unmount(target string, flags int) error {
	if err := unix.Unmount(target, flags); err != nil {
		return &os.PathError{Op: "umount", Path: target, Err: err}
	}
	return nil
}

func (osSystem) MountSetattr(target string, recursive bool, set, clr uint64) error {
	var flags uint
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, target, flags, &unix.MountAttr{Attr_set: set, Attr_clr: clr}); err != nil {
		return &os.PathError{Op: "mount_setattr", Path: target, Err: err}
	}
	return nil
}

func (osSystem) MkdirAll(p string, perm fs.FileMode) error { return os.MkdirAll(p, perm) }

func (osSystem) CreateFile(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func (osSystem) WriteFile(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (osSystem) Remove(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (osSystem) Mknod(p string, mode uint32, dev uint64) error {
	if err := unix.Mknod(p, mode, int(dev)); err != nil {
		return &os.PathError{Op: "mknod", Path: p, Err: err}
	}
	return nil
}

func (osSystem) Chmod(p string, mode uint32) error {
	if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

func (osSystem) Lchown(p string, uid, gid int) error { return os.Lchown(p, uid, gid) }
func (osSystem) Symlink(target, link string) error   { return os.Symlink(target, link) }

func (osSystem) CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		return copyEntry(p, filepath.Join(dst, rel))
	})
}

// copyEntry copies one directory, file, symlink or device node, keeping
// mode, owner and modification time.
func copyEntry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	perm := st.Mode &^ unix.S_IFMT
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFREG:
		if err := copyFile(src, dst); err != nil {
			return err
		}
	default: // devices, fifos, sockets
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	}
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, perm); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimes", Path: dst, Err: err}
	}
	return nil
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copying %q to %q: %w", src, dst, err)
	}
	return nil
}

func (osSystem) Sethostname(name string) error { return unix.Sethostname([]byte(name)) }
func (osSystem) Sync()                         { unix.Sync() }

func (osSystem) Kill(pid int, sig unix.Signal) error { return unix.Kill(pid, sig) }

func (osSystem) ListProcs() ([]procInfo, error) { return listProcs("/proc") }

func (osSystem) KillAll(sig unix.Signal) error {
	if err := unix.Kill(-1, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signalling every process with %d: %w", sig, err)
	}
	return nil
}

func (osSystem) HasChildren() (bool, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("waitid: %w", err)
		}
		return true, nil
	}
}

func (osSystem) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

func (osSystem) ReadDir(p string) ([]string, error) {
	es, err := os.ReadDir(p)
	names := make([]string, 0, len(es))
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, err
}

func (osSystem) FlushBuffers(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return &os.PathError{Op: "BLKFLSBUF", Path: dev, Err: err}
	}
	return nil
}

func (osSystem) PowerOff() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func (osSystem) SetClock(t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		return fmt.Errorf("setting the clock: %w", err)
	}
	return nil
}

func (osSystem) BootTime() (time.Time, error) {
	var wall, boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &wall); err != nil {
		return time.Time{}, fmt.Errorf("reading the wall clock: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return time.Time{}, fmt.Errorf("reading CLOCK_BOOTTIME: %w", err)
	}
	return time.Unix(0, wall.Nano()-boot.Nano()), nil
}

// rndAddEntropy and rndReseedCRNG are <linux/random.h>'s ioctls.
const (
	rndAddEntropy = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG = 0x5207     // _IO('R', 0x07)
)

func (osSystem) Reseed(entropy []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/urandom: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(entropy)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	copy(info[8:], entropy)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndAddEntropy, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("adding entropy: %w", errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0); errno != 0 {
		return fmt.Errorf("reseeding the random generator: %w", errno)
	}
	return nil
}

// bootClock is CLOCK_BOOTTIME: time since the kernel started, suspend
// included.
func bootClock() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
