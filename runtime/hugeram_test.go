package runtime

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeHugeHost is a hugeRAMHost over in-memory files that records its
// mounts, mkdirs and locks.
type fakeHugeHost struct {
	files    map[string]string
	mountErr error
	mounts   []string // "source target fstype flags data"
	mkdirs   []string
	locked   []string
}

func (f *fakeHugeHost) host() hugeRAMHost {
	return hugeRAMHost{
		readFile: func(p string) ([]byte, error) {
			if s, ok := f.files[p]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
		mkdirAll: func(p string, _ os.FileMode) error { f.mkdirs = append(f.mkdirs, p); return nil },
		mount: func(source, target, fstype string, flags uintptr, data string) error {
			if f.mountErr != nil {
				return f.mountErr
			}
			f.mounts = append(f.mounts, strings.Join([]string{source, target, fstype, flagWords(flags), data}, " "))
			return nil
		},
		lock: func(p string) (func(), error) { f.locked = append(f.locked, p); return func() {}, nil },
	}
}

func flagWords(flags uintptr) string {
	var w []string
	for _, f := range []struct {
		bit  uintptr
		name string
	}{{unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"}, {unix.MS_NOEXEC, "noexec"}} {
		if flags&f.bit != 0 {
			w = append(w, f.name)
		}
	}
	return strings.Join(w, ",")
}

const (
	thpOn        = "2097152\n"
	shmemNever   = "always within_size advise [never] deny force\n"
	mountsPlain  = "22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1000k,mode=755\n"
	ramHuge      = "40 22 0:40 / /run/ram rw,nosuid,nodev,noexec - tmpfs initos-ram rw,mode=700,huge=within_size\n"
	ramHugeAlway = "41 22 0:41 / /run/ram rw - tmpfs initos-ram rw,huge=always\n"
	ramSmall     = "42 22 0:42 / /run/ram rw - tmpfs tmpfs rw,mode=700\n"
	ramExt4      = "43 22 8:1 / /run/ram rw - ext4 /dev/sda1 rw\n"
)

func TestHugeRAMDir(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		dir       string
		mountErr  error
		wantAlign int64
		wantErr   string // substring; errNoHugeRAM unless it says "reading"
		wantMount []string
	}{
		{"not mounted: mounts a huge tmpfs", map[string]string{thpPMDSizeFile: thpOn, thpShmemFile: shmemNever, selfMountInfo: mountsPlain}, "/run/ram", nil,
			2 << 20, "", []string{"initos-ram /run/ram tmpfs nosuid,nodev,noexec huge=within_size,size=0,nr_inodes=0,mode=0700"}},
		{"mounted with huge=within_size", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: mountsPlain + ramHuge}, "/run/ram", nil, 2 << 20, "", nil},
		{"mounted with huge=always", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: mountsPlain + ramHugeAlway}, "/run/ram", nil, 2 << 20, "", nil},
		{"mounted without huge pages", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: mountsPlain + ramSmall}, "/run/ram", nil,
			0, "/run/ram is mounted, but not a tmpfs with huge", nil},
		{"not a tmpfs", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: ramExt4}, "/run/ram", nil, 0, "not a tmpfs", nil},
		{"the top mount counts", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: ramHuge + ramSmall}, "/run/ram", nil, 0, "is mounted, but", nil},
		{"a space in the path", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: strings.Replace(ramHuge, "/run/ram", `/run/my\040ram`, 1)}, "/run/my ram", nil, 2 << 20, "", nil},
		{"another dir's mount does not count", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: ramHuge}, "/run/ram2", nil,
			2 << 20, "", []string{"initos-ram /run/ram2 tmpfs nosuid,nodev,noexec huge=within_size,size=0,nr_inodes=0,mode=0700"}},
		{"no THP in the host kernel", map[string]string{selfMountInfo: mountsPlain}, "/run/ram", nil, 0, "no transparent huge pages", nil},
		{"a garbled huge page size", map[string]string{thpPMDSizeFile: "lots\n", selfMountInfo: mountsPlain}, "/run/ram", nil, 0, `says "lots"`, nil},
		{"huge page size not a power of two", map[string]string{thpPMDSizeFile: "3000000\n", selfMountInfo: mountsPlain}, "/run/ram", nil, 0, `says "3000000"`, nil},
		{"shmem denied", map[string]string{thpPMDSizeFile: thpOn, thpShmemFile: "always within_size advise never [deny] force\n", selfMountInfo: mountsPlain}, "/run/ram", nil, 0, "is deny", nil},
		{"mount refused", map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: mountsPlain}, "/run/ram", unix.EPERM,
			0, `mounting a tmpfs (huge=within_size,size=0,nr_inodes=0,mode=0700) on "/run/ram": operation not permitted`, nil},
		{"no mountinfo", map[string]string{thpPMDSizeFile: thpOn}, "/run/ram", nil, 0, "reading /proc/self/mountinfo", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHugeHost{files: tt.files, mountErr: tt.mountErr}
			align, err := f.host().hugeRAMDir(tt.dir)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("hugeRAMDir: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("hugeRAMDir: %v, want an error with %q", err, tt.wantErr)
			case tt.wantErr != "" && !strings.HasPrefix(tt.wantErr, "reading") && !errors.Is(err, errNoHugeRAM):
				t.Errorf("hugeRAMDir: %v is not errNoHugeRAM", err)
			}
			if align != tt.wantAlign {
				t.Errorf("align = %d, want %d", align, tt.wantAlign)
			}
			if strings.Join(f.mounts, "|") != strings.Join(tt.wantMount, "|") {
				t.Errorf("mounts %q, want %q", f.mounts, tt.wantMount)
			}
			if len(f.mounts) > 0 && (len(f.locked) != 1 || f.locked[0] != tt.dir+".lock") {
				t.Errorf("mounted under locks %q, want %q", f.locked, tt.dir+".lock")
			}
			if tt.wantErr == "" && len(tt.wantMount) == 0 && len(f.locked)+len(f.mkdirs) != 0 {
				t.Errorf("found mounted, yet locked %q and made %q", f.locked, f.mkdirs)
			}
		})
	}
}

func TestHugePageState(t *testing.T) {
	for _, tt := range []struct {
		name, mounts, want, wantErr string
	}{
		{"to be mounted", mountsPlain, "on 2048 KiB huge pages (a tmpfs mounted on /run/ram by the boot that needs it)", ""},
		{"mounted", mountsPlain + ramHuge, "on 2048 KiB huge pages (tmpfs /run/ram)", ""},
		{"mounted small", ramSmall, "", "not a tmpfs with huge"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHugeHost{files: map[string]string{thpPMDSizeFile: thpOn, selfMountInfo: tt.mounts}}
			got, err := f.host().hugePageState("/run/ram")
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("hugePageState = %q, %v; want %q, error with %q", got, err, tt.want, tt.wantErr)
			}
			if len(f.mounts) != 0 || len(f.mkdirs) != 0 {
				t.Errorf("hugePageState changed the host: mounts %q, mkdirs %q", f.mounts, f.mkdirs)
			}
		})
	}
}

func TestWithHugeRAM(t *testing.T) {
	virtiofs := vmm.Config{Shares: []vmm.Share{{Dir: "/r", Tag: "r", Mode: vmm.ShareVirtiofs}}}
	ninep := vmm.Config{Shares: []vmm.Share{{Dir: "/r", Tag: "r", Mode: vmm.Share9p}}}
	c := Config{RAMDir: "/run/ram"}
	for _, tt := range []struct {
		name      string
		vcfg      vmm.Config
		c         Config
		driver    string
		prepErr   error
		wantDir   string
		wantCalls int
	}{
		{"qemu with virtiofs", virtiofs, c, "qemu", nil, "/run/ram", 1},
		{"qemu with 9p only: anonymous RAM already", ninep, c, "qemu", nil, "", 0},
		{"cloud-hypervisor", virtiofs, c, "cloud-hypervisor", nil, "", 0},
		{"off by config", virtiofs, Config{RAMDir: "/run/ram", NoHugePages: true}, "qemu", nil, "", 0},
		{"no huge pages on the host: a memfd", virtiofs, c, "qemu", errNoHugeRAM, "", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			got := withHugeRAM(tt.vcfg, tt.c, tt.driver, func(dir string) (int64, error) {
				calls++
				if dir != tt.c.RAMDir {
					t.Errorf("prepare(%q), want %q", dir, tt.c.RAMDir)
				}
				return 2 << 20, tt.prepErr
			})
			if got.RAMDir != tt.wantDir || calls != tt.wantCalls {
				t.Errorf("RAMDir %q after %d calls, want %q after %d", got.RAMDir, calls, tt.wantDir, tt.wantCalls)
			}
			if wantAlign := map[bool]int64{true: 2 << 20}[tt.wantDir != ""]; got.RAMAlign != wantAlign {
				t.Errorf("RAMAlign = %d, want %d", got.RAMAlign, wantAlign)
			}
		})
	}
}

// TestHugeRAMDirMounts mounts the tmpfs for real (root, a host with THP)
// and checks that a second call finds it instead of mounting again.
func TestHugeRAMDirMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts a tmpfs)")
	}
	if _, err := os.Stat(thpPMDSizeFile); err != nil {
		t.Skipf("no transparent huge pages on this host: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "ram")
	h := realHugeRAM()
	align, err := h.hugeRAMDir(dir)
	if err != nil {
		t.Fatalf("hugeRAMDir: %v", err)
	}
	t.Cleanup(func() {
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	})
	if align < 4096 {
		t.Errorf("align %d", align)
	}
	if _, err := h.hugeRAMDir(dir); err != nil {
		t.Fatalf("hugeRAMDir again: %v", err)
	}
	b, err := os.ReadFile(selfMountInfo)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			n++
			if !strings.Contains(l, "huge=within_size") {
				t.Errorf("mount %q has no huge=within_size", l)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d mounts on %s, want 1", n, dir)
	}
	if s, err := h.hugePageState(dir); err != nil || !strings.Contains(s, "(tmpfs "+dir+")") {
		t.Errorf("hugePageState = %q, %v", s, err)
	}
}
