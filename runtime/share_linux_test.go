package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
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
	// submounts are the mount points below a source, by source.
	submounts map[string][]string
}

func (f *fakeMounts) install(t *testing.T) {
	om, ou, osf, oms, osm, oa := mountFunc, unmountFunc, statfsFunc, mountSetattrFunc, submountsFunc, attachServedFunc
	t.Cleanup(func() {
		mountFunc, unmountFunc, statfsFunc, mountSetattrFunc, submountsFunc, attachServedFunc = om, ou, osf, oms, osm, oa
	})
	attachServedFunc = func(served, src, entry string, rec, ro, rro bool, _ mountTrees) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		rel, _ := filepath.Rel(served, entry)
		f.mounts = append(f.mounts, fmt.Sprintf("attach %s %s rec=%v ro=%v rro=%v", src, rel, rec, ro, rro))
		return nil
	}
	mountSetattrFunc = func(_ int, p string, flags uint, attr *unix.MountAttr) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		kind := "setattr"
		if flags&unix.AT_RECURSIVE != 0 {
			kind += "-recursive"
		}
		if attr.Attr_set&unix.MOUNT_ATTR_RDONLY != 0 {
			kind += "-ro"
		}
		f.mounts = append(f.mounts, kind+" "+filepath.Base(p))
		return nil
	}
	submountsFunc = func(src string) ([]string, error) { return f.submounts[src], nil }
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

// TestShareReadOnly: "ro" makes the share's entry read-only, not the mounts
// below it (runc's ro without rro), "rro" all of them; a recursive bind of
// a directory tells the guest its submounts, which it binds one by one.
func TestShareReadOnly(t *testing.T) {
	src := t.TempDir()
	file := filepath.Join(src, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(src)
	for _, tc := range []struct {
		name       string
		source     string
		options    []string
		wantMounts []string
		wantSubs   []string
	}{
		{"rw rbind", src, []string{"rbind", "rprivate", "rw"}, []string{"bind " + src + " " + base}, []string{"tmpfs", "tmpfs/deeper"}},
		{"ro rbind: the entry alone", src, []string{"rbind", "rprivate", "ro"},
			[]string{"bind " + src + " " + base, "remount-ro  " + base}, []string{"tmpfs", "tmpfs/deeper"}},
		{"rro: every mount", src, []string{"rbind", "rprivate", "rro"},
			[]string{"bind " + src + " " + base, "setattr-recursive-ro " + base}, []string{"tmpfs", "tmpfs/deeper"}},
		{"bind without rec: no submounts", src, []string{"bind", "ro"}, []string{"bind " + src + " " + base, "remount-ro  " + base}, nil},
		{"a file has none", file, []string{"rbind", "ro"}, []string{"bind " + file + " f", "remount-ro  f"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fakeMounts{submounts: map[string][]string{src: {"tmpfs", "tmpfs/deeper"}}}
			f.install(t)
			s := &specs.Spec{Mounts: []specs.Mount{{Destination: "/mnt", Type: "bind", Source: tc.source, Options: tc.options}}}
			mounts, sh, err := guestMounts(s, t.TempDir(), false)
			if err != nil {
				t.Fatal(err)
			}
			defer sh.remove()
			// After the shared directory's own two (TestGuestMountsShare).
			if got := f.mounts[2:]; !reflect.DeepEqual(got, tc.wantMounts) {
				t.Errorf("host mounts %q, want %q", got, tc.wantMounts)
			}
			if got := mounts[0].Submounts; !reflect.DeepEqual(got, tc.wantSubs) {
				t.Errorf("submounts %q, want %q", got, tc.wantSubs)
			}
			if !reflect.DeepEqual(mounts[0].Options, tc.options) {
				t.Errorf("options %q, want the spec's %q", mounts[0].Options, tc.options)
			}
		})
	}
}

func TestSubmountsBelow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dir    string
		points []string
		want   []string
	}{
		{"none", "/data", []string{"/", "/data", "/proc"}, nil},
		{"below only", "/data", []string{"/", "/data", "/data/tmpfs", "/database", "/data2/x"}, []string{"tmpfs"}},
		{"parents first, once", "/data/", []string{"/data/a/b", "/data/a", "/data/c", "/data/a"}, []string{"a", "c", "a/b"}},
		{"root", "/", []string{"/", "/proc", "/proc/sys/fs/binfmt_misc"}, []string{"proc", "proc/sys/fs/binfmt_misc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := submountsBelow(tc.dir, tc.points); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("submountsBelow(%q, %q) = %q, want %q", tc.dir, tc.points, got, tc.want)
			}
		})
	}
}

// TestShareRefusesSharedPropagation: a host path's bind with shared
// propagation (Kubernetes' Bidirectional) is refused, naming the mount and
// the option; the share is left empty.
func TestShareRefusesSharedPropagation(t *testing.T) {
	src := t.TempDir()
	for _, tc := range []struct {
		name    string
		mount   specs.Mount
		wantErr string
	}{
		{"rshared", specs.Mount{Destination: "/vol", Type: "bind", Source: src, Options: []string{"rbind", "rshared", "rw"}}, `"rshared"`},
		{"shared", specs.Mount{Destination: "/vol", Type: "bind", Source: src, Options: []string{"bind", "shared"}}, `"shared"`},
		{"rslave passes", specs.Mount{Destination: "/vol", Type: "bind", Source: src, Options: []string{"rbind", "rslave"}}, ""},
		{"rprivate passes", specs.Mount{Destination: "/vol", Type: "bind", Source: src, Options: []string{"rbind", "rprivate"}}, ""},
		{"a guest tmpfs may be shared", specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"rshared"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f fakeMounts
			f.install(t)
			state := t.TempDir()
			_, sh, err := guestMounts(&specs.Spec{Mounts: []specs.Mount{tc.mount}}, state, false)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				sh.remove()
				return
			}
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), src) ||
				!strings.Contains(err.Error(), "/vol") || !strings.Contains(err.Error(), "Bidirectional") {
				t.Fatalf("guestMounts = %v, want ErrUnsupported naming the mount, %s and Bidirectional", err, tc.wantErr)
			}
			if len(f.mounts) != 0 {
				t.Errorf("host mounts made: %q", f.mounts)
			}
		})
	}
}

// TestShareServedEntries: a pod member's entries on virtiofs are mounted in
// virtiofsd's namespace alone (read-only flags on the clone), except those
// with slave propagation, which stay the host's peers.
func TestShareServedEntries(t *testing.T) {
	src := t.TempDir()
	base := filepath.Base(src)
	for _, tc := range []struct {
		name    string
		options []string
		want    []string
	}{
		{"ro", []string{"rbind", "rprivate", "ro"}, []string{"attach " + src + " m-1/0/" + base + " rec=true ro=true rro=false"}},
		{"rro", []string{"rbind", "rprivate", "rro"}, []string{"attach " + src + " m-1/0/" + base + " rec=true ro=false rro=true"}},
		{"plain bind", []string{"bind"}, []string{"attach " + src + " m-1/0/" + base + " rec=false ro=false rro=false"}},
		{"rslave stays on the host", []string{"rbind", "rslave", "ro"}, []string{"bind " + src + " " + base, "remount-ro  " + base}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fakeMounts{submounts: map[string][]string{src: {"tmpfs"}}}
			f.install(t)
			pod := t.TempDir()
			var sh *share
			s := &specs.Spec{Mounts: []specs.Mount{{Destination: "/mnt", Type: "bind", Source: src, Options: tc.options}}}
			mounts, err := shareMounts(s, &sh, filepath.Join(pod, "m-1"), "/z/m-1", pod, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sh.remove()
			if !reflect.DeepEqual(f.mounts, tc.want) {
				t.Errorf("mounts %q, want %q", f.mounts, tc.want)
			}
			if got := mounts[0].Source; got != "/z/m-1/0/"+base {
				t.Errorf("guest source %q", got)
			}
		})
	}
}

// TestVirtiofsdPid: the sandboxed virtiofsd of a directory is the process
// whose command line serves it from a mount namespace other than ours.
func TestVirtiofsdPid(t *testing.T) {
	tries := virtiofsdTries
	virtiofsdTries = 0
	t.Cleanup(func() { virtiofsdTries = tries })
	proc := t.TempDir()
	add := func(pid, ns string, args ...string) {
		t.Helper()
		d := filepath.Join(proc, pid, "ns")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ns, filepath.Join(d, "mnt")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(strings.Join(args, "\x00")+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	add("self", "mnt:[1]")
	add("10", "mnt:[1]", "/usr/lib/qemu/virtiofsd", "--socket-path=/s/v1.sock", "-o", "source=/st/a,b/share", "-o", "cache=none")
	add("11", "mnt:[2]", "/usr/lib/qemu/virtiofsd", "--socket-path=/s/v1.sock", "-o", "source=/st/a\\,b/share", "-o", "cache=none")
	add("12", "mnt:[3]", "/usr/lib/qemu/virtiofsd", "--socket-path=/s/v0.sock", "-o", "source=/st/other/share")
	add("20", "mnt:[4]", "virtiofsd", "--socket-path=/r.sock", "--shared-dir=/rust/share", "--cache=never")
	add("21", "mnt:[5]", "virtiofsd", "--shared-dir", "/rust2/share")
	add("30", "mnt:[1]", "virtiofsd", "--shared-dir=/host-only/share")
	for _, tc := range []struct {
		dir  string
		want int
	}{{"/st/a,b/share", 11}, {"/st/other/share", 12}, {"/rust/share", 20}, {"/rust2/share", 21}, {"/host-only/share", 0}, {"/none", 0}} {
		pid, err := virtiofsdPid(proc, tc.dir)
		if tc.want == 0 {
			if !errors.Is(err, errNoVirtiofsd) {
				t.Errorf("virtiofsdPid(%q) = %d, %v; want errNoVirtiofsd", tc.dir, pid, err)
			}
			continue
		}
		if err != nil || pid != tc.want {
			t.Errorf("virtiofsdPid(%q) = %d, %v; want %d", tc.dir, pid, err, tc.want)
		}
	}
}
