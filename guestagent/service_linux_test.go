package guestagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

const testRootfs = "/run/initos/rootfs"

func newTestService(t *testing.T) (*Service, *fakeSystem, *fakeLauncher) {
	t.Helper()
	sys, l := newFakeSystem(), newFakeLauncher()
	cfg := serviceConfig{
		Rootfs:        testRootfs,
		KernelRelease: "6.1.0-test",
		DeviceWait:    50 * time.Millisecond,
		TermGrace:     50 * time.Millisecond,
		PowerOffDelay: time.Millisecond,
		OutputLimit:   1 << 10,
	}
	return newService(cfg, sys, l, newLogger(io.Discard, true)), sys, l
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// podmanMounts are the mounts podman's default spec asks for that the guest
// can make itself.
func podmanMounts() []*agentapi.Mount {
	return []*agentapi.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

func TestSetupPodmanSpec(t *testing.T) {
	s, sys, _ := newTestService(t)
	req := &agentapi.SetupRequest{
		RootDevice:   "/dev/vda",
		RootFstype:   "btrfs",
		RootReadonly: true,
		Hostname:     "box",
		Mounts:       podmanMounts(),
		DeviceNodes: []*agentapi.DeviceNode{
			{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, Mode: 0o666},
			{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, Mode: 0o600, Uid: 0, Gid: 5},
		},
	}
	if _, err := s.Setup(ctx5s(t), req); err != nil {
		t.Fatal(err)
	}
	r := testRootfs
	wantMounts := []string{
		// The guest's cgroup v2 first, for the containers' cgroups.
		"mount cgroup2 /sys/fs/cgroup cgroup2 0x0 ",
		fmt.Sprintf("mount /dev/vda %s btrfs 0x0 ", r),
		fmt.Sprintf("mount proc %s/proc proc %#x ", r, unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV),
		fmt.Sprintf("mount tmpfs %s/dev tmpfs %#x mode=755,size=65536k", r, unix.MS_NOSUID|unix.MS_STRICTATIME),
		fmt.Sprintf("mount sysfs %s/sys sysfs %#x ", r, unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV|unix.MS_RDONLY),
		fmt.Sprintf("mount devpts %s/dev/pts devpts %#x newinstance,ptmxmode=0666,mode=0620,gid=5", r, unix.MS_NOSUID|unix.MS_NOEXEC),
		fmt.Sprintf("mount mqueue %s/dev/mqueue mqueue %#x ", r, unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV),
		// Without a cgroup namespace, the container's own cgroup, as runc
		// binds it, read-only.
		fmt.Sprintf("mount %s %s/sys/fs/cgroup  %#x ", cgroupOf(""), r, unix.MS_BIND),
		fmt.Sprintf("mount  %s/sys/fs/cgroup  %#x ", r, unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV|unix.MS_RELATIME|unix.MS_RDONLY),
		fmt.Sprintf("mount  %s/sys/fs/cgroup  %#x ", r, unix.MS_PRIVATE|unix.MS_REC),
		// config.md root.readonly, after everything else.
		fmt.Sprintf("mount  %s  %#x ", r, unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY),
	}
	if got := sys.Calls("mount"); !reflect.DeepEqual(got, wantMounts) {
		t.Errorf("mounts:\n got %q\nwant %q", got, wantMounts)
	}
	// The given nodes first, then the default devices the request did not
	// name (null was named).
	var nodes []string
	for _, c := range sys.Calls("mknod") {
		nodes = append(nodes, strings.Fields(c)[1])
	}
	wantNodes := []string{r + "/dev/null", r + "/dev/fuse", r + "/dev/zero", r + "/dev/full", r + "/dev/random", r + "/dev/urandom", r + "/dev/tty"}
	if !reflect.DeepEqual(nodes, wantNodes) {
		t.Errorf("device nodes:\n got %q\nwant %q", nodes, wantNodes)
	}
	fuse := []string{
		"remove " + r + "/dev/fuse",
		fmt.Sprintf("mknod %s/dev/fuse %#o 10:229", r, unix.S_IFCHR|0o600),
		"chown " + r + "/dev/fuse 0:5",
		"chmod " + r + "/dev/fuse 0600",
	}
	var gotFuse []string
	for _, c := range sys.Calls("remove", "mknod", "chown", "chmod") {
		if strings.Contains(c, "/dev/fuse") {
			gotFuse = append(gotFuse, c)
		}
	}
	if !reflect.DeepEqual(gotFuse, fuse) {
		t.Errorf("recreating /dev/fuse:\n got %q\nwant %q", gotFuse, fuse)
	}
	wantLinks := []string{
		"symlink " + r + "/dev/fd -> /proc/self/fd",
		"symlink " + r + "/dev/stdin -> /proc/self/fd/0",
		"symlink " + r + "/dev/stdout -> /proc/self/fd/1",
		"symlink " + r + "/dev/stderr -> /proc/self/fd/2",
		"symlink " + r + "/dev/ptmx -> pts/ptmx",
	}
	if got := sys.Calls("symlink"); !reflect.DeepEqual(got, wantLinks) {
		t.Errorf("symlinks:\n got %q\nwant %q", got, wantLinks)
	}
	if got := sys.Calls("hostname"); !reflect.DeepEqual(got, []string{"hostname box"}) {
		t.Errorf("hostname calls %q", got)
	}

	// Setup twice names the state.
	_, err := s.Setup(ctx5s(t), req)
	if !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "set up") {
		t.Errorf("second Setup = %v, want ErrFailedPrecondition naming the state", err)
	}
}

// TestSetupDevWithoutDevMount: a spec without a /dev mount keeps the
// rootfs's /dev with the default devices made in it (runc's way), never
// the guest's devtmpfs (the VM's disks, the agent's channel).
func TestSetupDevWithoutDevMount(t *testing.T) {
	s, sys, _ := newTestService(t)
	sys.files["/srv"] = fs.ModeDir | 0o755 // a directory in the guest
	_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{
		RootDevice: "/dev/vda", RootFstype: "btrfs",
		Mounts: []*agentapi.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind", "ro", "nosuid"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := testRootfs
	want := []string{
		"mount cgroup2 /sys/fs/cgroup cgroup2 0x0 ",
		fmt.Sprintf("mount /dev/vda %s btrfs 0x0 ", r),
		fmt.Sprintf("mount proc %s/proc proc 0x0 ", r),
		fmt.Sprintf("mount /srv %s/data  %#x ", r, unix.MS_BIND|unix.MS_REC),
		fmt.Sprintf("mount  %s/data  %#x ", r, unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID),
	}
	if got := sys.Calls("mount"); !reflect.DeepEqual(got, want) {
		t.Errorf("mounts:\n got %q\nwant %q", got, want)
	}
	if got := sys.Calls("mknod"); len(got) != len(defaultDevices) || got[0] != fmt.Sprintf("mknod %s/dev/null 020666 1:3", r) {
		t.Errorf("default devices in the rootfs's /dev: %q", got)
	}
}

// TestSetupSharedRoot: a root from the root share is the share mounted
// once (cached for mmap on 9p), the container's directory in it bound on
// the root, and a read-only root remounted read-only after its mount
// points were made.
func TestSetupSharedRoot(t *testing.T) {
	for _, fstype := range []string{"virtiofs", "9p"} {
		t.Run(fstype, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{
				RootShare:    &agentapi.Share{Tag: "initos-root", Fstype: fstype, MountPoint: "/run/initos/roots", Mmap: true},
				RootPath:     "c",
				RootReadonly: true,
				Mounts:       []*agentapi.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			r := testRootfs
			data := ""
			if fstype == "9p" {
				data = "trans=virtio,version=9p2000.L,msize=262144,cache=mmap"
			}
			want := []string{
				"mount cgroup2 /sys/fs/cgroup cgroup2 0x0 ",
				fmt.Sprintf("mount initos-root /run/initos/roots %s 0x0 %s", fstype, data),
				fmt.Sprintf("mount /run/initos/roots/c %s  %#x ", r, unix.MS_BIND|unix.MS_REC),
				fmt.Sprintf("mount proc %s/proc proc 0x0 ", r),
				fmt.Sprintf("mount  %s  %#x ", r, unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY),
			}
			if got := sys.Calls("mount"); !reflect.DeepEqual(got, want) {
				t.Errorf("mounts:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestSetupHotAddedShare: a share whose device is being attached (a
// clone's virtiofs share) is mounted once its tag appears; one that never
// appears fails after its wait, naming it; without a wait the first
// failure is the answer.
func TestSetupHotAddedShare(t *testing.T) {
	const mp = "/run/initos/roots"
	tests := []struct {
		name    string
		wait    uint32
		appears time.Duration // -1: never
		err     error
		wantErr string
	}{
		{"appears", 2000, 50 * time.Millisecond, unix.EINVAL, ""},
		{"never appears", 100, -1, unix.EINVAL, "did not appear within 100ms"},
		{"no wait", 0, -1, unix.ENOENT, "no such file"},
		{"another error is not waited for", 2000, -1, unix.EPERM, "operation not permitted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			sys.mu.Lock()
			sys.failMount[mp] = tt.err
			sys.mu.Unlock()
			if tt.appears >= 0 {
				time.AfterFunc(tt.appears, func() {
					sys.mu.Lock()
					delete(sys.failMount, mp)
					sys.mu.Unlock()
				})
			}
			t0 := time.Now()
			_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{
				RootShare: &agentapi.Share{Tag: "initos-root", Fstype: "virtiofs", MountPoint: mp, WaitMillis: tt.wait},
				RootPath:  "c",
			})
			took := time.Since(t0)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Setup = %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && tt.err != unix.EINVAL && took > time.Second {
				t.Errorf("a failure that is not a missing tag took %s", took)
			}
		})
	}
}

func TestSetupSharedRootErrors(t *testing.T) {
	share := &agentapi.Share{Tag: "initos-root", Fstype: "virtiofs", MountPoint: "/run/initos/roots"}
	for _, rel := range []string{"", "/c", "../c", "c/../../x", ".", "c/"} {
		t.Run(rel, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootShare: share, RootPath: rel})
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), fmt.Sprintf("root_path %q", rel)) {
				t.Errorf("Setup = %v, want ErrInvalidArgument naming root_path %q", err, rel)
			}
			if got := sys.Calls("mount /run/initos/roots"); len(got) != 0 {
				t.Errorf("mounted %q", got)
			}
		})
	}
}

func TestSetupResolvesSymlinksInsideRootfs(t *testing.T) {
	s, sys, _ := newTestService(t)
	r := testRootfs
	sys.files[r+"/var"] = fs.ModeDir
	sys.links[r+"/var/run"] = "/run" // absolute: must stay in the rootfs
	_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{
		RootDevice: "/dev/vda", RootFstype: "btrfs",
		Mounts: []*agentapi.Mount{{Destination: "/var/run/x", Type: "tmpfs", Source: "tmpfs"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("mount tmpfs %s/run/x tmpfs 0x0 ", r)
	if got := sys.Calls("mount tmpfs"); !reflect.DeepEqual(got, []string{want}) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestSetupRefusesProcThroughSymlink: a proc mount whose destination a
// symlink of the image leads elsewhere is refused, as runc refuses it,
// with nothing left mounted.
func TestSetupRefusesProcThroughSymlink(t *testing.T) {
	s, sys, _ := newTestService(t)
	r := testRootfs
	sys.files[r+"/tmp"] = fs.ModeDir
	sys.links[r+"/proc"] = "/tmp"
	_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", OwnPidNamespace: true,
		Mounts: podmanMounts()[:1]})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `proc would go on "/tmp"`) {
		t.Errorf("Setup with /proc a symlink to /tmp = %v, want ErrInvalidArgument naming /tmp", err)
	}
	if got := sys.Calls("mount proc"); len(got) != 0 {
		t.Errorf("proc mounted: %q", got)
	}
	if left := sys.mountedTargets(); len(left) > 1 { // the VM's cgroup2 stays
		t.Errorf("mounts left: %q", left)
	}
}

func TestSetupHostBindFailsAndRollsBack(t *testing.T) {
	s, sys, _ := newTestService(t)
	req := &agentapi.SetupRequest{
		RootDevice: "/dev/vda", RootFstype: "btrfs",
		Mounts: []*agentapi.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/containers/hosts", Options: []string{"rbind"}},
		},
	}
	_, err := s.Setup(ctx5s(t), req)
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "shared directory") ||
		!strings.Contains(err.Error(), "/var/lib/containers/hosts") {
		t.Fatalf("Setup = %v, want ErrNotSupported naming the source and the shared directory", err)
	}
	if left := sys.mountedTargets(); len(left) != 0 {
		t.Errorf("mounts left after the failed Setup: %q", left)
	}
	// Unmounted in reverse order.
	want := []string{"umount " + testRootfs + "/proc 0", "umount " + testRootfs + " 0"}
	if got := sys.Calls("umount"); !reflect.DeepEqual(got, want) {
		t.Errorf("unmounts %q, want %q", got, want)
	}
	// A failed Setup may be retried.
	req.Mounts = req.Mounts[:1]
	if _, err := s.Setup(ctx5s(t), req); err != nil {
		t.Errorf("retrying Setup: %v", err)
	}
}

// TestSetupBindSubmounts: a recursive bind of a host path binds each of
// its submounts on its own before the bind's remount, so that "ro" leaves
// them writable (runc's ro without rro); "rro" makes them all read-only
// with one recursive mount_setattr; unmounting goes in reverse.
func TestSetupBindSubmounts(t *testing.T) {
	r := testRootfs
	for _, tc := range []struct {
		name    string
		options []string
		subs    []string
		want    []string
		err     string
	}{
		{"ro: the bind alone", []string{"rbind", "rprivate", "ro"}, []string{"tmpfs", "tmpfs/deep"}, []string{
			"mount /z/0/src " + r + "/mnt  0x5000 ",
			"mount /z/0/src/tmpfs " + r + "/mnt/tmpfs  0x1000 ",
			"mount /z/0/src/tmpfs/deep " + r + "/mnt/tmpfs/deep  0x1000 ",
			"mount  " + r + "/mnt  0x1021 ",
			"mount  " + r + "/mnt  0x44000 ",
		}, ""},
		{"rro: all of them", []string{"rbind", "rprivate", "rro"}, []string{"tmpfs"}, []string{
			"mount /z/0/src " + r + "/mnt  0x5000 ",
			"mount /z/0/src/tmpfs " + r + "/mnt/tmpfs  0x1000 ",
			"mount_setattr " + r + "/mnt recursive=true set=0x1 clr=0x0",
			"mount  " + r + "/mnt  0x44000 ",
		}, ""},
		{"bind without rec ignores them", []string{"bind", "ro"}, []string{"tmpfs"}, []string{
			"mount /z/0/src " + r + "/mnt  0x1000 ",
			"mount  " + r + "/mnt  0x1021 ",
		}, ""},
		{"a submount that climbs out", []string{"rbind", "ro"}, []string{"../etc"}, nil, "clean relative path"},
		{"an absolute submount", []string{"rbind", "ro"}, []string{"/etc"}, nil, "clean relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			sys.files["/z/0/src"] = fs.ModeDir
			req := &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
				Mounts: []*agentapi.Mount{{Destination: "/mnt", Type: "bind", Source: "/z/0/src", Options: tc.options, Submounts: tc.subs}}}
			_, err := s.Setup(ctx5s(t), req)
			if tc.err != "" {
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Setup = %v, want an invalid argument with %q", err, tc.err)
				}
				if left := sys.mountedTargets(); len(left) != 0 {
					t.Errorf("mounts left: %q", left)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range sys.Calls("mount") {
				if strings.Contains(c, r+"/mnt") {
					got = append(got, c)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("calls\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestSetupErrors(t *testing.T) {
	tests := []struct {
		name string
		req  *agentapi.SetupRequest
		prep func(*fakeSystem)
		kind error
		text string
	}{
		{"no device", &agentapi.SetupRequest{RootDevice: "/dev/vdz", RootFstype: "btrfs"}, nil, ErrNotFound, `"/dev/vdz"`},
		{"no fstype", &agentapi.SetupRequest{RootDevice: "/dev/vda"}, nil, ErrInvalidArgument, "root_fstype"},
		{"mount fails", &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"},
			func(f *fakeSystem) { f.failMount[testRootfs] = unix.EINVAL }, unix.EINVAL, "/dev/vda"},
		{"bad option", &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
			Mounts: []*agentapi.Mount{{Destination: "/x", Type: "tmpfs", Options: []string{"idmap"}}}}, nil, ErrNotSupported, "idmap"},
		{"no type", &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
			Mounts: []*agentapi.Mount{{Destination: "/x", Source: "/y"}}}, nil, ErrInvalidArgument, `"/x"`},
		{"bad device type", &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
			DeviceNodes: []*agentapi.DeviceNode{{Path: "/dev/x", Type: "q"}}}, nil, ErrInvalidArgument, `"/dev/x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			if tt.prep != nil {
				tt.prep(sys)
			}
			_, err := s.Setup(ctx5s(t), tt.req)
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Setup = %v, want %v naming %s", err, tt.kind, tt.text)
			}
			if left := sys.mountedTargets(); len(left) != 0 {
				t.Errorf("mounts left: %q", left)
			}
		})
	}
}

func processJSON(t *testing.T, p specs.Process) []byte {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func setUpService(t *testing.T) (*Service, *fakeSystem, *fakeLauncher) {
	t.Helper()
	s, sys, l := newTestService(t)
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"}); err != nil {
		t.Fatal(err)
	}
	return s, sys, l
}

func TestCreateProcessNeedsSetup(t *testing.T) {
	s, _, _ := newTestService(t)
	_, err := s.CreateProcess(ctx5s(t), &agentapi.CreateProcessRequest{Id: "c1",
		ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})})
	if !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), "booted") {
		t.Errorf("CreateProcess before Setup = %v", err)
	}
}

func TestCreateProcessValidation(t *testing.T) {
	s, _, _ := setUpService(t)
	tests := []struct {
		name string
		json []byte
		text string
	}{
		{"not json", []byte("{"), "process_json"},
		{"no args", processJSON(t, specs.Process{Cwd: "/"}), "args"},
		{"relative cwd", processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "tmp"}), `"tmp"`},
		{"unknown rlimit", processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/",
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_FOO"}}}), "RLIMIT_FOO"},
		{"duplicate rlimit", processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/",
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1, Hard: 1}, {Type: "RLIMIT_NOFILE", Soft: 1, Hard: 1}}}), "twice"},
		{"soft above hard", processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/",
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}}}), "soft"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateProcess(ctx5s(t), &agentapi.CreateProcessRequest{Id: "x", ProcessJson: tt.json})
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %v, want ErrInvalidArgument naming %s", err, tt.text)
			}
		})
	}
	if _, err := s.CreateProcess(ctx5s(t), &agentapi.CreateProcessRequest{}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("empty id: %v", err)
	}
}

func readAllStream(t *testing.T, read func(context.Context, *agentapi.ReadRequest) (*agentapi.ReadResponse, error), id string) string {
	t.Helper()
	var out []byte
	for {
		resp, err := read(ctx5s(t), &agentapi.ReadRequest{Id: id, MaxBytes: 4})
		if err != nil {
			t.Fatalf("reading %s: %v", id, err)
		}
		if len(resp.Data) == 0 {
			return string(out)
		}
		if len(resp.Data) > 4 {
			t.Fatalf("got %d bytes for max_bytes 4", len(resp.Data))
		}
		out = append(out, resp.Data...)
	}
}

func TestProcessLifecycle(t *testing.T) {
	s, sys, l := setUpService(t)
	ctx := ctx5s(t)
	resp, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "c1",
		ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"A=1"}})})
	if err != nil {
		t.Fatal(err)
	}
	fp := l.proc("c1")
	if resp.Pid != uint32(fp.pid) || fp.req.Rootfs != testRootfs || fp.req.Process.Env[0] != "A=1" {
		t.Errorf("pid %d (want %d), request %+v", resp.Pid, fp.pid, fp.req)
	}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "c1",
		ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("duplicate id: %v", err)
	}

	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "c1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fp.started:
	default:
		t.Fatal("StartProcess did not start the process")
	}
	_, err = s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "c1"})
	if !errors.Is(err, ErrFailedPrecondition) || !strings.Contains(err.Error(), `"c1"`) || !strings.Contains(err.Error(), "running") {
		t.Errorf("second StartProcess = %v, want an error naming c1 and its state", err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("StartProcess of an unknown id = %v", err)
	}

	// stdin arrives in order; CloseStdin gives EOF.
	got := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(fp.stdin)
		got <- string(data)
	}()
	for _, chunk := range []string{"hello ", "world"} {
		w, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{Id: "c1", Data: []byte(chunk)})
		if err != nil || w.Written != uint32(len(chunk)) {
			t.Fatalf("WriteStdin = %v, %v", w, err)
		}
	}
	if _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{Id: "c1"}); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "hello world" {
		t.Errorf("stdin got %q", g)
	}
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{Id: "c1", Data: []byte("x")}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("WriteStdin after CloseStdin = %v", err)
	}

	// Output, then exit: everything written before the exit arrives.
	go func() {
		fp.stdout.Write([]byte("out line\n"))
		fp.stderr.Write([]byte("err line\n"))
		fp.exit(3)
	}()
	// Two waiters.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "c1"})
			if err != nil || w.ExitStatus != 3 || w.ExitedAtUnixNano != time.Unix(1700000000, 42).UnixNano() {
				t.Errorf("WaitProcess = %v, %v", w, err)
			}
		}()
	}
	if out := readAllStream(t, s.ReadStdout, "c1"); out != "out line\n" {
		t.Errorf("stdout %q", out)
	}
	if out := readAllStream(t, s.ReadStderr, "c1"); out != "err line\n" {
		t.Errorf("stderr %q", out)
	}
	wg.Wait()

	_, err = s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "c1", Signal: 15})
	if !errors.Is(err, ErrFailedPrecondition) || err.Error() != `process "c1" has exited` {
		t.Errorf("signalling an exited process = %v", err)
	}
	if got := sys.Calls("kill"); len(got) != 0 {
		t.Errorf("an exited process was signalled: %q", got)
	}
	if _, err := s.ResizePty(ctx, &agentapi.ResizePtyRequest{Id: "c1", Width: 80, Height: 24}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("ResizePty without a terminal = %v", err)
	}
}

func TestSignalProcess(t *testing.T) {
	s, sys, _ := setUpService(t)
	ctx := ctx5s(t)
	for _, id := range []string{"main", "exec1"} {
		if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: id,
			ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "exec1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if got := sys.Calls("kill"); !reflect.DeepEqual(got, []string{"kill 102 9"}) {
		t.Errorf("kills %q", got)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "nope", Signal: 9}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "exec1", Signal: 9, All: true}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("all for an exec: %v", err)
	}
	// A process that died before the reaper noticed: ESRCH reads as exited.
	sys.onKill = func(int, unix.Signal) error { return unix.ESRCH }
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "exec1", Signal: 15}); !errors.Is(err, ErrFailedPrecondition) ||
		!strings.Contains(err.Error(), "has exited") {
		t.Errorf("ESRCH: %v", err)
	}
	sys.onKill = nil

	sys.procs = []procInfo{
		{Pid: 1, Comm: "init"}, {Pid: 2, Comm: "kthreadd", Kernel: true},
		{Pid: s.self, Comm: "self"}, {Pid: 101, Comm: "sh"}, {Pid: 150, Comm: "daemon"},
	}
	sys.calls = nil
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "main", Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := sys.Calls("kill"), []string{"kill 101 9", "kill 150 9"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kill --all signalled %q, want %q", got, want)
	}
}

func TestTerminalProcess(t *testing.T) {
	s, _, l := setUpService(t)
	ctx := ctx5s(t)
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "t",
		ProcessJson: processJSON(t, specs.Process{Terminal: true, Args: []string{"sh"}, Cwd: "/"})}); err != nil {
		t.Fatal(err)
	}
	fp := l.proc("t")
	if _, err := s.ResizePty(ctx, &agentapi.ResizePtyRequest{Id: "t", Width: 100, Height: 30}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fp.resized, []string{"100x30"}) {
		t.Errorf("resized %q", fp.resized)
	}
	// stderr is at EOF at once with a terminal.
	if resp, err := s.ReadStderr(ctx, &agentapi.ReadRequest{Id: "t", MaxBytes: 10}); err != nil || len(resp.Data) != 0 {
		t.Errorf("ReadStderr = %v, %v; want EOF", resp, err)
	}
	// CloseStdin with a terminal only marks stdin closed.
	if _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{Id: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{Id: "t", Data: []byte("x")}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("WriteStdin after CloseStdin: %v", err)
	}
}

func TestReadHonoursContext(t *testing.T) {
	s, _, _ := setUpService(t)
	if _, err := s.CreateProcess(ctx5s(t), &agentapi.CreateProcessRequest{Id: "c",
		ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.ReadStdout(ctx, &agentapi.ReadRequest{Id: "c"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadStdout = %v, want the deadline", err)
	}
	if _, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "c"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitProcess = %v, want the deadline", err)
	}
}

func TestStartErrorAndLaunchError(t *testing.T) {
	s, _, l := setUpService(t)
	ctx := ctx5s(t)
	l.launchErr = errorf(ErrNotFound, `exec: "nope": executable file not found in $PATH`)
	_, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "x",
		ProcessJson: processJSON(t, specs.Process{Args: []string{"nope"}, Cwd: "/"})})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `exec: "nope": executable file not found in $PATH`) {
		t.Errorf("CreateProcess = %v", err)
	}
	l.launchErr = nil
	// The id is free again.
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "x",
		ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})}); err != nil {
		t.Fatal(err)
	}
	l.proc("x").startErr = errors.New(`exec "/bin/sh": permission denied`)
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "x"}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("StartProcess = %v", err)
	}
}

func TestListProcesses(t *testing.T) {
	s, sys, _ := newTestService(t)
	sys.procs = []procInfo{
		{Pid: 1, Comm: "init", Args: []string{"/init"}},
		{Pid: 2, Comm: "kthreadd", Kernel: true},
		{Pid: 40, Ppid: 1, Comm: "sh", Args: []string{"sh", "-c", "x"}},
	}
	resp, err := s.ListProcesses(ctx5s(t), &agentapi.ListProcessesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Processes) != 1 || resp.Processes[0].Pid != 40 || resp.Processes[0].Ppid != 1 ||
		resp.Processes[0].Comm != "sh" || !reflect.DeepEqual(resp.Processes[0].Args, []string{"sh", "-c", "x"}) {
		t.Errorf("ListProcesses = %v", resp.Processes)
	}
}

func TestListProcessesDetail(t *testing.T) {
	s, sys, _ := newTestService(t)
	sys.procs = []procInfo{
		{Pid: 1, Comm: "init", Args: []string{"/init"}},
		{Pid: 40, Ppid: 1, Comm: "sh", Args: []string{"sh"}},
		{Pid: 41, Ppid: 40, Comm: "gone"},
		{Pid: 42, Ppid: 40, Comm: "sleep"},
	}
	sys.fileData = map[string][]byte{
		"/proc/40/stat":   []byte("40 (sh) S 1 40 40 0 -1 4194560 0 0 0 0 3 1 0 0 20 0 1 0 250 1 1\n"),
		"/proc/40/status": []byte("Name:\tsh\nPid:\t40\nNSpid:\t40\t1\n"),
		"/proc/42/stat":   []byte("42 (sleep) S 40 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 260 1 1\n"),
		"/proc/42/status": []byte("Name:\tsleep\nPid:\t42\n"), // a kernel without NSpid
	}
	resp, err := s.ListProcesses(ctx5s(t), &agentapi.ListProcessesRequest{Detail: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC).UnixNano(); resp.BootUnixNano != want {
		t.Errorf("BootUnixNano = %d, want %d", resp.BootUnixNano, want)
	}
	if resp.Truncated || len(resp.Processes) != 2 {
		t.Fatalf("ListProcesses = %v (truncated %v), want 40 and 42 (41 exited)", resp.Processes, resp.Truncated)
	}
	sh, sleep := resp.Processes[0], resp.Processes[1]
	if sh.Stat != string(sys.fileData["/proc/40/stat"]) || sh.Status != string(sys.fileData["/proc/40/status"]) {
		t.Errorf("sh = %v, want its files", sh)
	}
	if sleep.Status != string(sys.fileData["/proc/42/status"]) {
		t.Errorf("sleep = %v, want its files", sleep)
	}
	plain, err := s.ListProcesses(ctx5s(t), &agentapi.ListProcessesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Processes) != 3 || plain.Processes[0].Stat != "" || plain.BootUnixNano != 0 {
		t.Errorf("ListProcesses without detail = %v", plain)
	}
}

func TestListProcessesDetailBounded(t *testing.T) {
	s, sys, _ := newTestService(t)
	sys.fileData = map[string][]byte{}
	status := strings.Repeat("x", 4000)
	for pid := 10; pid < 210; pid++ {
		sys.procs = append(sys.procs, procInfo{Pid: pid, Ppid: 1, Comm: "p"})
		sys.fileData[fmt.Sprintf("/proc/%d/stat", pid)] = []byte(fmt.Sprintf("%d (p) S 1", pid))
		sys.fileData[fmt.Sprintf("/proc/%d/status", pid)] = []byte(status)
	}
	resp, err := s.ListProcesses(ctx5s(t), &agentapi.ListProcessesRequest{Detail: true})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Truncated || len(resp.Processes) == 0 || len(resp.Processes) == 200 {
		t.Errorf("200 processes of 4 KB: %d listed, truncated %v; want some, and truncated", len(resp.Processes), resp.Truncated)
	}
	if n := proto.Size(resp); n > maxDetailReply {
		t.Errorf("reply of %d bytes, more than %d", n, maxDetailReply)
	}
}

func TestRestored(t *testing.T) {
	at := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		r       *agentapi.RestoredRequest
		want    []string // recorded calls
		wantErr string
	}{
		{"clock and reseed", &agentapi.RestoredRequest{UnixNanos: at.UnixNano(), Entropy: make([]byte, 64)},
			[]string{"reseed 64", "setclock 2026-12-01T17:00:00Z"}, ""},
		{"too little entropy", &agentapi.RestoredRequest{UnixNanos: at.UnixNano(), Entropy: make([]byte, 8)}, nil, "8 bytes of entropy"},
		{"too much entropy", &agentapi.RestoredRequest{UnixNanos: at.UnixNano(), Entropy: make([]byte, 4096)}, nil, "4096 bytes of entropy"},
		{"no clock", &agentapi.RestoredRequest{Entropy: make([]byte, 32)}, nil, "not a time after the epoch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			_, err := s.Restored(ctx5s(t), tt.r)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Restored = %v, want an invalid argument naming %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := sys.Calls("reseed", "setclock"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("calls %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPing(t *testing.T) {
	s, _, _ := newTestService(t)
	resp, err := s.Ping(ctx5s(t), &agentapi.PingRequest{})
	if err != nil || resp.AgentVersion != agentapi.Version || resp.KernelRelease != "6.1.0-test" || resp.BootMillis != 0 || resp.BootSteps != nil {
		t.Errorf("Ping before ready = %v, %v", resp, err)
	}
	clock := []time.Duration{900 * time.Millisecond, 950 * time.Millisecond, 1234500 * time.Microsecond}
	trace := newBootTrace(func() time.Duration { d := clock[0]; clock = clock[1:]; return d })
	trace.mark("mounts")
	trace.setReady("transport")
	s.setReady(trace)
	resp, err = s.Ping(ctx5s(t), &agentapi.PingRequest{})
	if err != nil || resp.BootMillis != 1234 || resp.InitMicros != 900000 || resp.ReadyMicros != 1234500 ||
		len(resp.BootSteps) != 2 || resp.BootSteps[0].Name != "mounts" || resp.BootSteps[0].Micros != 50000 ||
		resp.BootSteps[1].Name != "transport" || resp.BootSteps[1].Micros != 284500 {
		t.Errorf("Ping = %v, %v", resp, err)
	}
}

func TestShutdown(t *testing.T) {
	s, sys, _ := setUpService(t)
	// A process that ignores SIGTERM and dies on SIGKILL.
	sys.procs = []procInfo{{Pid: 1, Comm: "init"}, {Pid: 77, Comm: "stubborn"}}
	sys.onKill = killedBySIGKILL(sys)
	if _, err := s.Shutdown(ctx5s(t), &agentapi.Empty{}); err != nil {
		t.Fatal(err)
	}
	if got, want := sys.Calls("kill"), []string{"kill 77 15", "kill 77 9"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kills %q, want %q", got, want)
	}
	if left := sys.mountedTargets(); len(left) != 0 {
		t.Errorf("still mounted after Shutdown: %q", left)
	}
	select {
	case <-sys.poweredOff:
	case <-time.After(5 * time.Second):
		t.Fatal("no power off after Shutdown")
	}
	// Power off comes after the sync and the unmounts.
	calls := sys.Calls("sync", "umount", "poweroff")
	if calls[len(calls)-1] != "poweroff" {
		t.Errorf("calls end with %q, want poweroff last", calls[len(calls)-1])
	}
}

// TestShutdownUnmounts: a VM with a filesystem on a block device unmounts
// everything after the sync; one whose filesystems are shares and memory
// only syncs.
func TestShutdownUnmounts(t *testing.T) {
	const shares = "22 1 0:21 / / rw - rootfs rootfs rw\n" +
		"25 22 0:5 / /dev rw - devtmpfs devtmpfs rw\n" +
		"40 22 0:40 / /run/initos/rootfs rw - virtiofs initos-root rw\n" +
		"41 22 0:41 / /run/initos/share rw - 9p initos-share rw,trans=virtio\n"
	for _, tc := range []struct {
		name      string
		mountinfo string // "": unreadable
		unmounts  bool
	}{
		{"root disk", shares + "42 22 0:42 / /run/initos/disk rw - btrfs /dev/vda rw\n", true},
		{"shares only", shares, false},
		{"mountinfo unreadable", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sys, _ := setUpService(t)
			if tc.mountinfo != "" {
				sys.mu.Lock()
				sys.fileData["/proc/self/mountinfo"] = []byte(tc.mountinfo)
				sys.mu.Unlock()
			}
			if _, err := s.Shutdown(ctx5s(t), &agentapi.Empty{}); err != nil {
				t.Fatal(err)
			}
			if got := len(sys.Calls("umount")) > 0; got != tc.unmounts {
				t.Errorf("unmounted: %v, want %v (calls %q)", got, tc.unmounts, sys.Calls("sync", "umount"))
			}
			if calls := sys.Calls("sync"); len(calls) == 0 {
				t.Error("no sync before the power off")
			}
		})
	}
}

// TestShutdownAsInit: the agent as the VM's init signals every process at
// once and waits until it has no child, reading no /proc.
func TestShutdownAsInit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		procs     []procInfo
		wantCalls []string
	}{
		{"nothing left", []procInfo{{Pid: 1, Comm: "agent"}}, []string{"killall 15", "haschildren"}},
		{"a process that ignores SIGTERM", []procInfo{{Pid: 1, Comm: "agent"}, {Pid: 77, Comm: "stubborn"}},
			[]string{"killall 15", "haschildren", "haschildren", "haschildren", "killall 9", "haschildren"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, sys, _ := setUpService(t)
			s.self = 1
			s.cfg.TermGrace = 30 * time.Millisecond
			sys.procs = tc.procs
			sys.onKill = killedBySIGKILL(sys)
			if _, err := s.Shutdown(ctx5s(t), &agentapi.Empty{}); err != nil {
				t.Fatal(err)
			}
			got := sys.Calls("killall", "haschildren", "kill ", "listprocs")
			// The polls during the grace period depend on timing: compare
			// without repeats of haschildren.
			if compact(got) == nil || !reflect.DeepEqual(compact(got), compact(tc.wantCalls)) {
				t.Errorf("calls %q, want %q", got, tc.wantCalls)
			}
			select {
			case <-sys.poweredOff:
			case <-time.After(5 * time.Second):
				t.Fatal("no power off after Shutdown")
			}
		})
	}
}

// killedBySIGKILL is an onKill under which every process but the first
// ignores SIGTERM and dies on SIGKILL.
func killedBySIGKILL(sys *fakeSystem) func(int, unix.Signal) error {
	return func(_ int, sig unix.Signal) error {
		if sig == unix.SIGKILL {
			sys.mu.Lock()
			sys.procs = sys.procs[:1]
			sys.mu.Unlock()
		}
		return nil
	}
}

// compact drops consecutive repeats.
func compact(calls []string) []string { return slices.Compact(slices.Clone(calls)) }

func TestStatsReadsTheContainersCgroup(t *testing.T) {
	s, sys, _ := newTestService(t)
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"}); err != nil {
		t.Fatal(err)
	}
	dir := "/sys/fs/cgroup/initos-default/"
	sys.fileData[dir+"cpu.stat"] = []byte("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
	sys.fileData[dir+"memory.current"] = []byte("4096\n")
	sys.fileData[dir+"memory.max"] = []byte("max\n")
	sys.fileData["/proc/meminfo"] = []byte("MemTotal:         501234 kB\nMemFree: 1 kB\n")
	sys.fileData[dir+"memory.stat"] = []byte("anon 1024\nfile 2048\n")
	sys.fileData[dir+"pids.current"] = []byte("3\n")
	sys.fileData[dir+"memory.events"] = []byte("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n")
	got, err := s.Stats(ctx5s(t), &agentapi.ContainerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &agentapi.StatsResponse{CpuUsageUsec: 1500, CpuUserUsec: 1000, CpuSystemUsec: 500, MemoryUsageBytes: 4096,
		MemoryLimitBytes: 501234 << 10, MemoryAnonBytes: 1024, MemoryFileBytes: 2048, PidsCurrent: 3,
		MemoryOomEvents: 2, MemoryOomKillEvents: 1}
	if !proto.Equal(got, want) {
		t.Errorf("Stats = %v, want %v", got, want)
	}
	if _, err := s.Stats(ctx5s(t), &agentapi.ContainerRequest{ContainerId: "nope"}); err == nil {
		t.Error("stats of a missing container")
	}
}

func TestSetupAppliesCgroupLimits(t *testing.T) {
	s, sys, _ := newTestService(t)
	req := &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
		Limits: &agentapi.CgroupLimits{MemoryBytes: 64 << 20, Pids: 100, CpuQuotaUs: 50000, CpuWeight: 39}}
	if _, err := s.Setup(ctx5s(t), req); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`write /sys/fs/cgroup/cgroup.subtree_control "+cpu +memory +pids"`,
		`write /sys/fs/cgroup/initos-default/memory.max "67108864"`,
		`write /sys/fs/cgroup/initos-default/pids.max "100"`,
		`write /sys/fs/cgroup/initos-default/cpu.max "50000 100000"`,
		`write /sys/fs/cgroup/initos-default/cpu.weight "39"`,
	}
	if got := sys.Calls("write /sys/fs/cgroup"); !reflect.DeepEqual(got, want) {
		t.Errorf("cgroup writes\n got %q\nwant %q", got, want)
	}
}

// TestFreezeContainer: a pause freezes the container's cgroup and returns
// once cgroup.events says frozen (the kernel's answer comes later than the
// write); a thaw likewise; a container not set up, a guest without
// cgroups and a cgroup that never freezes fail, naming the container.
func TestFreezeContainer(t *testing.T) {
	s, sys, _ := newTestService(t)
	if _, err := s.FreezeContainer(ctx5s(t), &agentapi.FreezeRequest{ContainerId: "nope", Frozen: true}); !errors.Is(err, ErrNotFound) {
		t.Errorf("freezing a container that is not set up: %v, want ErrNotFound", err)
	}
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"}); err != nil {
		t.Fatal(err)
	}
	dir := "/sys/fs/cgroup/initos-default/"
	sys.mu.Lock()
	sys.fileData[dir+"cgroup.events"] = []byte("populated 1\nfrozen 0\n")
	sys.onWrite = func(p string, data []byte) {
		if p == dir+"cgroup.freeze" {
			state := string(data)
			// The kernel's answer, a little later.
			time.AfterFunc(20*time.Millisecond, func() {
				sys.mu.Lock()
				defer sys.mu.Unlock()
				sys.fileData[dir+"cgroup.events"] = []byte("populated 1\nfrozen " + state + "\n")
			})
		}
	}
	sys.mu.Unlock()
	for _, frozen := range []bool{true, false} {
		if _, err := s.FreezeContainer(ctx5s(t), &agentapi.FreezeRequest{Frozen: frozen}); err != nil {
			t.Fatalf("FreezeContainer(%v): %v", frozen, err)
		}
		sys.mu.Lock()
		ev := string(sys.fileData[dir+"cgroup.events"])
		sys.mu.Unlock()
		if want := map[bool]string{true: "frozen 1", false: "frozen 0"}[frozen]; !strings.Contains(ev, want) {
			t.Errorf("FreezeContainer(%v) returned before the cgroup said %q (%q)", frozen, want, ev)
		}
	}
	if got := sys.Calls("write " + dir + "cgroup.freeze"); len(got) != 2 || !strings.HasSuffix(got[0], `"1"`) || !strings.HasSuffix(got[1], `"0"`) {
		t.Errorf("cgroup.freeze writes %q, want 1 then 0", got)
	}

	// A cgroup that never says frozen: the caller's deadline ends the wait.
	sys.mu.Lock()
	sys.onWrite = nil
	sys.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.FreezeContainer(ctx, &agentapi.FreezeRequest{Frozen: true}); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `container ""`) {
		t.Errorf("freezing a cgroup that never freezes: %v, want a deadline error naming the container", err)
	}

	s.cgroups = false
	if _, err := s.FreezeContainer(ctx5s(t), &agentapi.FreezeRequest{Frozen: true}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("freezing without cgroups: %v, want ErrFailedPrecondition", err)
	}
}

func TestUpdateLimits(t *testing.T) {
	s, sys, _ := newTestService(t)
	if _, err := s.UpdateLimits(ctx5s(t), &agentapi.UpdateLimitsRequest{Limits: &agentapi.CgroupLimits{Pids: 5}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateLimits before Setup: %v, want ErrNotFound", err)
	}
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateLimits(ctx5s(t), &agentapi.UpdateLimitsRequest{Limits: &agentapi.CgroupLimits{Pids: 5}}); err != nil {
		t.Fatal(err)
	}
	if got := sys.Calls("write /sys/fs/cgroup/initos-default/pids.max"); len(got) != 1 || !strings.HasSuffix(got[0], `"5"`) {
		t.Errorf("pids.max writes %q", got)
	}
}

func TestSetupMasksPaths(t *testing.T) {
	s, sys, _ := newTestService(t)
	r := testRootfs
	sys.files[r+"/proc"] = fs.ModeDir
	sys.files[r+"/proc/kcore"] = 0o400
	sys.files[r+"/proc/sys"] = fs.ModeDir
	sys.files[r+"/sys"] = fs.ModeDir
	sys.files[r+"/sys/firmware"] = fs.ModeDir
	req := &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
		MaskedPaths:   []string{"/proc/kcore", "/sys/firmware", "/proc/not-here"},
		ReadonlyPaths: []string{"/proc/sys", "/proc/not-here-either"}}
	if _, err := s.Setup(ctx5s(t), req); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("mount /dev/null %s/proc/kcore  %#x ", r, unix.MS_BIND),
		fmt.Sprintf("mount tmpfs %s/sys/firmware tmpfs %#x ", r, unix.MS_RDONLY),
		fmt.Sprintf("mount %s/proc/sys %s/proc/sys  %#x ", r, r, unix.MS_BIND|unix.MS_REC),
		fmt.Sprintf("mount  %s/proc/sys  %#x ", r, unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY),
	}
	got := sys.Calls("mount")
	if len(got) < len(want) || !reflect.DeepEqual(got[len(got)-len(want):], want) {
		t.Errorf("mounts end with\n %q\nwant\n %q", got, want)
	}
}

// TestSetupLeavesProcMasksToTheProcess: a container whose first process
// mounts the /proc of its own PID namespace (mountsOwnProc) gets the spec's
// /proc from Setup, in the spec's order, but not the masks under it, which
// the process makes in its own; the masks elsewhere are Setup's. Without a
// PID namespace of its own, Setup masks /proc too.
func TestSetupLeavesProcMasksToTheProcess(t *testing.T) {
	r := testRootfs
	procMount := fmt.Sprintf("mount proc %s/proc proc %#x ", r, unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV)
	kcore := fmt.Sprintf("mount /dev/null %s/proc/kcore  %#x ", r, unix.MS_BIND)
	firmware := fmt.Sprintf("mount tmpfs %s/sys/firmware tmpfs %#x ", r, unix.MS_RDONLY)
	procSys := fmt.Sprintf("mount %s/proc/sys %s/proc/sys  %#x ", r, r, unix.MS_BIND|unix.MS_REC)
	tests := []struct {
		name     string
		ownPidns bool
		want     []string // the mounts of these that Setup makes
	}{
		{"own PID namespace", true, []string{procMount, firmware}},
		{"the VM's PID namespace", false, []string{procMount, kcore, firmware, procSys}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sys, _ := newTestService(t)
			// The image's files; /proc's appear with a proc mounted on it.
			sys.files[r+"/sys/firmware"] = fs.ModeDir
			sys.onMount = func(source, target string) {
				if source == "proc" {
					sys.files[target+"/kcore"] = 0o400
					sys.files[target+"/sys"] = fs.ModeDir
				}
			}
			req := &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", OwnPidNamespace: tt.ownPidns,
				Mounts:        podmanMounts()[:1],
				MaskedPaths:   []string{"/proc/kcore", "/sys/firmware"},
				ReadonlyPaths: []string{"/proc/sys"}}
			if _, err := s.Setup(ctx5s(t), req); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range sys.Calls("mount") {
				if slices.Contains([]string{procMount, kcore, firmware, procSys}, c) {
					got = append(got, c)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mounts:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestMountsOwnProc: which first processes mount the /proc of their PID
// namespace.
func TestMountsOwnProc(t *testing.T) {
	tests := []struct {
		newNs, joinNs []string
		want          bool
	}{
		{[]string{"uts", "ipc", "mount", "pid"}, nil, true}, // podman's
		{[]string{"mount"}, []string{"pid", "ipc"}, true},   // a pod member sharing the sandbox's PID namespace
		{[]string{"uts", "ipc", "mount"}, nil, false},       // the VM's PID namespace
		{nil, []string{"pid"}, false},                       // no mount namespace of its own: Setup's /proc
		{nil, []string{"pid", "mount", "uts"}, false},       // an exec
	}
	for _, tt := range tests {
		if got := mountsOwnProc(tt.newNs, tt.joinNs); got != tt.want {
			t.Errorf("mountsOwnProc(%q, %q) = %v, want %v", tt.newNs, tt.joinNs, got, tt.want)
		}
	}
}

// TestProcessNamespaces: a container's first process makes the namespaces
// its spec asks for and joins those it shares with the default container;
// its later processes join the first one's.
func TestProcessNamespaces(t *testing.T) {
	s, sys, l := newTestService(t)
	sys.files["/dev/vdb"], sys.files["/dev/vdc"] = fs.ModeDevice, fs.ModeDevice
	ctx := ctx5s(t)
	if _, err := s.Setup(ctx, &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", Hostname: "box",
		OwnPidNamespace: true, NewNamespaces: []string{"uts", "ipc", "mount", "cgroup"}}); err != nil {
		t.Fatal(err)
	}
	create := func(cid, id string) (*fakeProc, error) {
		t.Helper()
		resp, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{ContainerId: cid, Id: id,
			ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})})
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, p := range l.procs {
			if p.pid == int(resp.Pid) {
				return p, nil
			}
		}
		t.Fatalf("no launch of pid %d", resp.Pid)
		return nil, nil
	}
	main, err := create("", "main")
	if err != nil {
		t.Fatal(err)
	}
	if got := main.req.NewNamespaces; !reflect.DeepEqual(got, []string{"uts", "ipc", "mount", "cgroup", "pid"}) || main.req.Hostname != "box" || main.req.JoinNamespacesOf != 0 {
		t.Errorf("first process: new %q, hostname %q, joins %d", got, main.req.Hostname, main.req.JoinNamespacesOf)
	}
	// Moved into its cgroup before it makes its cgroup namespace.
	if want := cgroupOf("") + "/cgroup.procs"; main.req.CgroupProcs != want {
		t.Errorf("first process's cgroup.procs %q, want %q", main.req.CgroupProcs, want)
	}
	exec, err := create("", "exec")
	if err != nil {
		t.Fatal(err)
	}
	if exec.req.JoinNamespacesOf != main.pid || !reflect.DeepEqual(exec.req.JoinNamespaces, []string{"uts", "ipc", "mount", "cgroup", "pid"}) || len(exec.req.NewNamespaces) != 0 {
		t.Errorf("exec: joins %q of %d, new %q; want the first process's, pid last", exec.req.JoinNamespaces, exec.req.JoinNamespacesOf, exec.req.NewNamespaces)
	}

	// A pod member: its own PID namespace, the sandbox's UTS and IPC.
	if _, err := s.Setup(ctx, &agentapi.SetupRequest{ContainerId: "app", RootDevice: "/dev/vdb", RootFstype: "btrfs",
		OwnPidNamespace: true, JoinNamespaces: []string{"uts", "ipc"}}); err != nil {
		t.Fatal(err)
	}
	app, err := create("app", "app")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(app.req.NewNamespaces, []string{"pid"}) || app.req.JoinNamespacesOf != main.pid || !reflect.DeepEqual(app.req.JoinNamespaces, []string{"uts", "ipc"}) {
		t.Errorf("member: new %q, joins %q of %d", app.req.NewNamespaces, app.req.JoinNamespaces, app.req.JoinNamespacesOf)
	}

	if _, err := s.Setup(ctx, &agentapi.SetupRequest{ContainerId: "bad", RootDevice: "/dev/vdc", RootFstype: "btrfs",
		NewNamespaces: []string{"user"}}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `"user"`) {
		t.Errorf("Setup with a user namespace = %v, want ErrInvalidArgument naming it", err)
	}
}

// TestPodSharedPidns: a pod member that joins the sandbox's PID namespace
// (CRI shareProcessNamespace) starts in it with a /proc of it in its own
// mount namespace; its execs join it, pid last; its processes, the
// sandbox's and the other member's are told apart by cgroup; removing it
// kills only its own.
func TestPodSharedPidns(t *testing.T) {
	s, sys, l := newTestService(t)
	sys.files["/dev/vdb"], sys.files["/dev/vdc"] = fs.ModeDevice, fs.ModeDevice
	ctx := ctx5s(t)
	if _, err := s.Setup(ctx, &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
		OwnPidNamespace: true, NewNamespaces: []string{"mount"}}); err != nil {
		t.Fatal(err)
	}
	create := func(cid, id string) *fakeProc {
		t.Helper()
		resp, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{ContainerId: cid, Id: id,
			ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})})
		if err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, p := range l.procs {
			if p.pid == int(resp.Pid) {
				return p
			}
		}
		t.Fatalf("no launch of pid %d", resp.Pid)
		return nil
	}
	// pids 101 (pause), 102 (app), 103 (app's exec), 104 (own's): the
	// sandbox's namespace is pid:[7], own's pid:[8].
	sys.links["/proc/101/ns/pid"], sys.links["/proc/102/ns/pid"] = "pid:[7]", "pid:[7]"
	sys.links["/proc/103/ns/pid"], sys.links["/proc/104/ns/pid"] = "pid:[7]", "pid:[8]"
	pause := create("", "pause")

	if _, err := s.Setup(ctx, &agentapi.SetupRequest{ContainerId: "app", RootDevice: "/dev/vdb", RootFstype: "btrfs",
		NewNamespaces: []string{"mount"}, JoinNamespaces: []string{"pid", "uts", "ipc"}}); err != nil {
		t.Fatal(err)
	}
	app := create("app", "app")
	if !reflect.DeepEqual(app.req.NewNamespaces, []string{"mount"}) || app.req.JoinNamespacesOf != pause.pid ||
		!reflect.DeepEqual(app.req.JoinNamespaces, []string{"uts", "ipc", "pid"}) {
		t.Errorf("member's first process: new %q, joins %q of %d; want mount, and uts, ipc, pid of %d",
			app.req.NewNamespaces, app.req.JoinNamespaces, app.req.JoinNamespacesOf, pause.pid)
	}
	exec := create("app", "app-exec")
	if exec.req.JoinNamespacesOf != app.pid || !reflect.DeepEqual(exec.req.JoinNamespaces, []string{"uts", "ipc", "mount", "pid"}) {
		t.Errorf("member's exec: joins %q of %d; want the member's, pid last", exec.req.JoinNamespaces, exec.req.JoinNamespacesOf)
	}
	if _, err := s.Setup(ctx, &agentapi.SetupRequest{ContainerId: "own", RootDevice: "/dev/vdc", RootFstype: "btrfs",
		OwnPidNamespace: true, NewNamespaces: []string{"mount"}}); err != nil {
		t.Fatal(err)
	}
	create("own", "own")

	sys.procs = []procInfo{
		{Pid: 1, Comm: "init"}, {Pid: 101, Comm: "pause", Pidns: "pid:[7]", Cgroup: "/initos-default"},
		{Pid: 102, Comm: "app", Pidns: "pid:[7]", Cgroup: "/c-app"}, {Pid: 103, Comm: "exec", Pidns: "pid:[7]", Cgroup: "/c-app"},
		{Pid: 150, Comm: "child", Pidns: "pid:[7]", Cgroup: "/c-app/sub"}, {Pid: 160, Comm: "other", Pidns: "pid:[7]", Cgroup: "/c-apple"},
		{Pid: 104, Comm: "own", Pidns: "pid:[8]", Cgroup: "/c-own"},
	}
	list := func(cid string) []uint32 {
		t.Helper()
		resp, err := s.ListProcesses(ctx, &agentapi.ListProcessesRequest{ContainerId: cid})
		if err != nil {
			t.Fatal(err)
		}
		var pids []uint32
		for _, p := range resp.Processes {
			pids = append(pids, p.Pid)
		}
		return pids
	}
	for cid, want := range map[string][]uint32{"": {101}, "app": {102, 103, 150}, "own": {104}} {
		if got := list(cid); !reflect.DeepEqual(got, want) {
			t.Errorf("processes of %q: %v, want %v", cid, got, want)
		}
	}
	sys.calls = nil
	if _, err := s.RemoveContainer(ctx, &agentapi.ContainerRequest{ContainerId: "app"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range sys.Calls("kill") {
		if k == "kill 101 9" || k == "kill 160 9" || k == "kill 104 9" {
			t.Errorf("removing the member: %s (not its process)", k)
		}
	}
	if got := sys.Calls("kill"); !slices.Contains(got, "kill 150 9") {
		t.Errorf("removing the member killed %q: not its child 150", got)
	}

	// Refused: a PID namespace of its own and the sandbox's; pid to make.
	for _, req := range []*agentapi.SetupRequest{
		{ContainerId: "x", RootDevice: "/dev/vdc", RootFstype: "btrfs", OwnPidNamespace: true, JoinNamespaces: []string{"pid"}},
		{ContainerId: "y", RootDevice: "/dev/vdc", RootFstype: "btrfs", NewNamespaces: []string{"pid"}},
		{ContainerId: "z", RootDevice: "/dev/vdc", RootFstype: "btrfs", JoinNamespaces: []string{"mount"}},
	} {
		if _, err := s.Setup(ctx, req); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Setup(new %q, join %q, own pid %v) = %v, want ErrInvalidArgument", req.NewNamespaces, req.JoinNamespaces, req.OwnPidNamespace, err)
		}
	}
}

func TestCgroupV2Path(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"0::/c-app\n", "/c-app"},
		{"12:pids:/x\n0::/initos-default/sub\n", "/initos-default/sub"},
		{"1:name=systemd:/\n", ""},
		{"", ""},
	} {
		if got := cgroupV2Path(tc.data); got != tc.want {
			t.Errorf("cgroupV2Path(%q) = %q, want %q", tc.data, got, tc.want)
		}
	}
}

func TestRootfsPropagation(t *testing.T) {
	s, _, l := newTestService(t)
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", RootfsPropagation: "bogus"}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("Setup with rootfs propagation bogus = %v, want ErrInvalidArgument naming it", err)
	}
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", RootfsPropagation: "rshared",
		NewNamespaces: []string{"mount"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.CreateProcess(ctx5s(t), &agentapi.CreateProcessRequest{Id: "main", ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})})
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		if p.pid == int(resp.Pid) && p.req.RootPropagation != unix.MS_SHARED|unix.MS_REC {
			t.Errorf("root propagation %#x, want MS_SHARED|MS_REC", p.req.RootPropagation)
		}
	}
}

// TestWaitReportsOOMKill: a process that died of SIGKILL after its
// container's cgroup counted an OOM kill is reported OOM-killed; a SIGKILL
// without one, or an OOM kill before it was created, is not.
func TestWaitReportsOOMKill(t *testing.T) {
	events := func(n int) []byte {
		return []byte(fmt.Sprintf("low 0\nhigh 0\nmax 3\noom %d\noom_kill %d\noom_group_kill 0\n", n, n))
	}
	tests := []struct {
		name          string
		before, after int
		status        int32
		want          bool
	}{
		{"killed by the OOM killer", 0, 1, 137, true},
		{"killed, no OOM", 2, 2, 137, false},
		{"an OOM kill of another process, then exit 1", 0, 1, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sys, l := setUpService(t)
			s.cgroups = true
			path := cgroupOf("") + "/memory.events"
			sys.mu.Lock()
			sys.fileData[path] = events(tt.before)
			sys.mu.Unlock()
			if _, err := s.CreateProcess(ctx5s(t), &agentapi.CreateProcessRequest{Id: "p",
				ProcessJson: processJSON(t, specs.Process{Args: []string{"sh"}, Cwd: "/"})}); err != nil {
				t.Fatal(err)
			}
			sys.mu.Lock()
			sys.fileData[path] = events(tt.after)
			sys.mu.Unlock()
			l.proc("p").exit(tt.status)
			w, err := s.WaitProcess(ctx5s(t), &agentapi.ProcessRequest{Id: "p"})
			if err != nil || w.ExitStatus != tt.status || w.OomKilled != tt.want {
				t.Errorf("WaitProcess = %v, %v; want status %d, oom_killed %v", w, err, tt.status, tt.want)
			}
		})
	}
}
