package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// DefaultRAMDir is where a VM whose RAM must be shared (virtiofsd maps
// it) gets it: a tmpfs the runtime mounts with transparent huge pages in
// the mount namespace the VMM starts in. That is a monitor's own (create,
// so podman and nerdctl), where the tmpfs ends with the monitor, or the
// caller's (run in the foreground), where it stays for the next boot.
// Outside Root, whose entries are containers.
const DefaultRAMDir = "/run/initos-runtime-ram"

// ramMountOptions are the tmpfs's: huge pages for every file within its
// size (qemu's RAM file is sized at its creation), no size or inode limit
// (a memfd has none either: guest memory is bounded by each VM's size and
// by its cgroup), reachable by root only.
const ramMountOptions = "huge=within_size,size=0,nr_inodes=0,mode=0700"

// THP's knobs in sysfs.
const (
	thpPMDSizeFile = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
	thpShmemFile   = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
	selfMountInfo  = "/proc/self/mountinfo"
)

// hugeRAMHost are the host operations hugeRAM needs, injectable for tests.
type hugeRAMHost struct {
	readFile func(string) ([]byte, error)
	mkdirAll func(string, os.FileMode) error
	// mount is mount(2) of a tmpfs: source, target, fstype, flags, data.
	mount func(source, target, fstype string, flags uintptr, data string) error
	// lock serialises the check and the mount between runtimes.
	lock func(path string) (unlock func(), err error)
}

// realHugeRAM is the host's hugeRAMHost.
func realHugeRAM() hugeRAMHost {
	return hugeRAMHost{readFile: os.ReadFile, mkdirAll: os.MkdirAll, mount: unix.Mount,
		lock: func(path string) (func(), error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return lockWait(ctx, path, 5*time.Millisecond)
		}}
}

// hugeRAMDir makes sure dir is a tmpfs whose files get transparent huge
// pages, mounting one there when nothing is mounted, and returns the huge
// page size, the alignment the VMM must map the RAM file at. Under TCG a
// cold boot with its RAM in a memfd, on the host's 4 KiB pages (a memfd
// gets huge pages only when the host's shmem_enabled says so, and
// Debian's says never), takes 200-300 ms longer than on anonymous memory
// with huge pages (docs/boot-budget.md). A dir mounted by someone else
// without huge pages is left as it is: errNoHugeRAM.
func (h hugeRAMHost) hugeRAMDir(dir string) (align int64, err error) {
	// Every boot after the first finds it mounted: no lock for that.
	align, mounted, err := h.probe(dir)
	if err != nil || mounted {
		return align, err
	}
	if err := h.mkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return 0, fmt.Errorf("creating the parent of %q: %w", dir, err)
	}
	unlock, err := h.lock(dir + ".lock")
	if err != nil {
		return 0, err
	}
	defer unlock()
	// Another runtime may have mounted it while this one waited.
	if align, mounted, err = h.probe(dir); err != nil || mounted {
		return align, err
	}
	if err := h.mkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("creating %q: %w", dir, err)
	}
	if err := h.mount("initos-ram", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ramMountOptions); err != nil {
		return 0, fmt.Errorf("%w: mounting a tmpfs (%s) on %q: %v", errNoHugeRAM, ramMountOptions, dir, err)
	}
	return align, nil
}

// hugePageState says, without mounting anything, whether shared guest
// RAM gets huge pages in dir (for `initos-runtime check`).
func (h hugeRAMHost) hugePageState(dir string) (string, error) {
	align, mounted, err := h.probe(dir)
	switch {
	case err != nil:
		return "", err
	case mounted:
		return fmt.Sprintf("on %d KiB huge pages (tmpfs %s)", align>>10, dir), nil
	}
	return fmt.Sprintf("on %d KiB huge pages (a tmpfs mounted on %s by the boot that needs it)", align>>10, dir), nil
}

// probe returns the host's huge page size and whether a tmpfs with huge
// pages is mounted on dir; errNoHugeRAM when the host has none for tmpfs
// or something else is mounted there.
func (h hugeRAMHost) probe(dir string) (align int64, mounted bool, err error) {
	if align, err = h.hugePageSize(); err != nil {
		return 0, false, err
	}
	mounted, huge, err := h.mountedHuge(dir)
	switch {
	case err != nil:
		return 0, false, err
	case mounted && !huge:
		return 0, false, fmt.Errorf("%w: %s is mounted, but not a tmpfs with huge=within_size or huge=always", errNoHugeRAM, dir)
	}
	return align, mounted, nil
}

// hugePageSize is the host's PMD huge page size, when its kernel has
// transparent huge pages and does not deny them to tmpfs.
func (h hugeRAMHost) hugePageSize() (int64, error) {
	b, err := h.readFile(thpPMDSizeFile)
	if err != nil {
		return 0, fmt.Errorf("%w: the host kernel has no transparent huge pages (%v)", errNoHugeRAM, err)
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || size <= 0 || size&(size-1) != 0 {
		return 0, fmt.Errorf("%w: %s says %q", errNoHugeRAM, thpPMDSizeFile, strings.TrimSpace(string(b)))
	}
	// "deny" turns the huge option off on every tmpfs mount.
	if b, err := h.readFile(thpShmemFile); err == nil && strings.Contains(string(b), "[deny]") {
		return 0, fmt.Errorf("%w: %s is deny", errNoHugeRAM, thpShmemFile)
	}
	return size, nil
}

// mountedHuge reports whether something is mounted on dir and, if so,
// whether the top mount is a tmpfs with huge pages for its files.
func (h hugeRAMHost) mountedHuge(dir string) (mounted, huge bool, err error) {
	b, err := h.readFile(selfMountInfo)
	if err != nil {
		return false, false, fmt.Errorf("reading %s: %w", selfMountInfo, err)
	}
	ms, err := mountinfo.GetMountsFromReader(bytes.NewReader(b), func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != dir, false
	})
	if err != nil {
		return false, false, fmt.Errorf("parsing %s: %w", selfMountInfo, err)
	}
	if len(ms) == 0 {
		return false, false, nil
	}
	top := ms[len(ms)-1]
	if top.FSType != "tmpfs" {
		return true, false, nil
	}
	for _, o := range strings.Split(top.VFSOptions, ",") {
		if o == "huge=within_size" || o == "huge=always" {
			return true, true, nil
		}
	}
	return true, false, nil
}
