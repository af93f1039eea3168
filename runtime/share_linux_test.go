package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeMounts records mount(2)/umount2(2) calls instead of making them.
type fakeMounts struct {
	mu       sync.Mutex // a monitor's members mount from goroutines of their own
	mounts   []string
	unmounts []string
	failOn   string
}

func (f *fakeMounts) install(t *testing.T) {
	om, ou, osf := mountFunc, unmountFunc, statfsFunc
	t.Cleanup(func() { mountFunc, unmountFunc, statfsFunc = om, ou, osf })
	mountFunc = func(src, dst, fstype string, flags uintptr, data string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.failOn != "" && src == f.failOn {
			return unix.EPERM
		}
		kind := "bind"
		if flags&unix.MS_REMOUNT != 0 {
			kind = "remount-ro"
		}
		if flags&unix.MS_SHARED != 0 {
			kind = "shared"
		}
		f.mounts = append(f.mounts, kind+" "+src+" "+filepath.Base(dst))
		return nil
	}
	unmountFunc = func(p string, flags int) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.unmounts = append(f.unmounts, filepath.Base(p))
		return nil
	}
	statfsFunc = func(p string, st *unix.Statfs_t) error {
		st.Blocks, st.Bsize = 2048, 4096
		return nil
	}
}

func TestGuestMountsShare(t *testing.T) {
	src := t.TempDir()
	file := filepath.Join(src, "hosts")
	if err := os.WriteFile(file, []byte("127.0.0.1 x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var f fakeMounts
	f.install(t)
	state := t.TempDir()
	s := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/etc/hosts", Type: "bind", Source: file, Options: []string{"rbind", "ro"}},
		{Destination: "/data", Type: "none", Source: src, Options: []string{"bind"}},
		{Destination: "/dev/shm", Type: "bind", Source: "/run/x/shm", Options: []string{"bind"}},
	}}
	mounts, sh, err := guestMounts(s, state, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mounts {
		got = append(got, m.Type+" "+m.Source+" "+m.Destination)
	}
	// An entry keeps its source's base name (runtimetest matches a bind by
	// the name of its root in mountinfo).
	// /dev/shm: keyed by the host path, which pod members share.
	shmKey := sha256.Sum256([]byte("/run/x/shm"))
	want := []string{"proc proc /proc", "bind /z/0/hosts /etc/hosts", "bind /z/1/" + filepath.Base(src) + " /data",
		"tmpfs initos-shm:" + hex.EncodeToString(shmKey[:8]) + " /dev/shm"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("guest mounts %q, want %q", got, want)
	}
	if size := mounts[3].Options[len(mounts[3].Options)-1]; size != "size=8388608" {
		t.Errorf("shm size option %q, want the source's size", size)
	}
	// The directory is a shared mount first: what members bind later
	// reaches virtiofsd.
	share := filepath.Join(state, "share")
	wantMounts := []string{"bind " + share + " share", "shared  share", "bind " + file + " hosts", "remount-ro  hosts", "bind " + src + " " + filepath.Base(src)}
	if !reflect.DeepEqual(f.mounts, wantMounts) {
		t.Errorf("host mounts %q, want %q", f.mounts, wantMounts)
	}
	if st, err := os.Stat(filepath.Join(state, "share", "0", "hosts")); err != nil || st.IsDir() {
		t.Errorf("file entry: %v", err)
	}
	if sh.vmmShare().Tag != shareTag || sh.agentShare().MountPoint != "/z" {
		t.Errorf("share %+v %+v", sh.vmmShare(), sh.agentShare())
	}
	if err := sh.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "share")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("share dir left: %v", err)
	}
	// Entries first (each slot, EINVAL on a real host, then its entry),
	// then the directory itself (EINVAL on a real host: only the root share
	// is a mount point).
	if !reflect.DeepEqual(f.unmounts, []string{"0", "hosts", "1", filepath.Base(src), "share"}) {
		t.Errorf("unmounts %q", f.unmounts)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the bound source was touched: %v", err)
	}
}

func TestGuestMountsRollback(t *testing.T) {
	src := t.TempDir()
	var f fakeMounts
	f.failOn = "/nonexistent-is-not-reached"
	f.install(t)
	state := t.TempDir()
	s := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/a", Type: "bind", Source: src},
		{Destination: "/b", Type: "bind", Source: filepath.Join(src, "missing")},
	}}
	if _, _, err := guestMounts(s, state, false); err == nil {
		t.Fatal("a missing source was accepted")
	}
	if _, err := os.Stat(filepath.Join(state, "share")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("share dir left after a failure: %v", err)
	}
	if !reflect.DeepEqual(f.unmounts, []string{"0", filepath.Base(src), "share"}) {
		t.Errorf("unmounts %q, want the first entry undone", f.unmounts)
	}
	s.Mounts = []specs.Mount{{Destination: "/c", Type: "bind", Source: "relative"}}
	if _, _, err := guestMounts(s, state, false); err == nil {
		t.Fatal("a relative source was accepted")
	}
}

func TestRemoveShareDirNeverRecurses(t *testing.T) {
	var f fakeMounts
	f.install(t)
	dir := filepath.Join(t.TempDir(), "share")
	// An entry that still holds files (as a bind mount that did not go
	// away would) must stop the removal.
	if err := os.MkdirAll(filepath.Join(dir, "0"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0", "precious"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeShareDir(dir); err == nil {
		t.Fatal("removeShareDir removed a non-empty entry")
	}
	if _, err := os.Stat(filepath.Join(dir, "0", "precious")); err != nil {
		t.Fatalf("file under an entry was removed: %v", err)
	}
}

func TestShareFS(t *testing.T) {
	found := func(string) (string, error) { return "/usr/lib/qemu/virtiofsd", nil }
	missing := func(string) (string, error) { return "", vmm.ErrNoVirtiofsd }
	tests := []struct {
		config, driver string
		find           func(string) (string, error)
		want           string
		wantErr        error
	}{
		{"auto", "qemu", found, vmm.ShareVirtiofs, nil},
		{"auto", "qemu", missing, vmm.Share9p, nil},
		{"auto", "cloud-hypervisor", missing, "", vmm.ErrNoVirtiofsd},
		{"9p", "qemu", found, vmm.Share9p, nil},
		{"9p", "cloud-hypervisor", found, "", ErrUnsupported},
		{"virtiofs", "qemu", missing, "", vmm.ErrNoVirtiofsd},
		{"virtiofs", "cloud-hypervisor", found, vmm.ShareVirtiofs, nil},
	}
	for _, tc := range tests {
		t.Run(tc.config+"/"+tc.driver, func(t *testing.T) {
			old := findVirtiofsd
			findVirtiofsd = tc.find
			defer func() { findVirtiofsd = old }()
			got, err := shareFS(Config{ShareFS: tc.config}, tc.driver)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("shareFS = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestRemoveShareDirGuestSymlinks: the guest can write in the share, and a
// symlink it planted must be unlinked, never followed by the unmount (which
// would detach the host mount it points to) nor by the removal.
func TestRemoveShareDirGuestSymlinks(t *testing.T) {
	var f fakeMounts
	f.install(t)
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "precious"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "share")
	if err := os.MkdirAll(filepath.Join(dir, "0"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{filepath.Join(dir, "evil"), filepath.Join(dir, "0", "evil")} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeShareDir(dir); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(f.unmounts, "evil") {
		t.Errorf("unmounts %q: a symlink was unmounted (followed)", f.unmounts)
	}
	if _, err := os.Stat(filepath.Join(target, "precious")); err != nil {
		t.Errorf("the symlink's target was touched: %v", err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("share dir left: %v", err)
	}
}
