//go:build linux

package guestagent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	devconfig "github.com/opencontainers/cgroups/devices/config"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// confinedSystem is a fakeSystem that records every path the service
// creates, changes or mounts on, to check that a request cannot make the
// agent touch the guest outside the places it owns.
type confinedSystem struct {
	*fakeSystem
	pmu     sync.Mutex
	touched []string
}

func (c *confinedSystem) touch(op string, paths ...string) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	for _, p := range paths {
		c.touched = append(c.touched, op+"\x00"+p)
	}
}

func (c *confinedSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	c.touch("mount", target)
	if err := c.fakeSystem.Mount(source, target, fstype, flags, data); err != nil {
		return err
	}
	if flags&unix.MS_MOVE != 0 {
		// The mount leaves source (fakeSystem only adds target).
		c.fakeSystem.mu.Lock()
		delete(c.fakeSystem.mounted, source)
		c.fakeSystem.mu.Unlock()
	}
	return nil
}

func (c *confinedSystem) MkdirAll(p string, perm fs.FileMode) error {
	c.touch("mkdir", p)
	return c.fakeSystem.MkdirAll(p, perm)
}

func (c *confinedSystem) CreateFile(p string) error {
	c.touch("create", p)
	return c.fakeSystem.CreateFile(p)
}

func (c *confinedSystem) WriteFile(p string, data []byte) error {
	c.touch("write", p)
	return c.fakeSystem.WriteFile(p, data)
}

func (c *confinedSystem) Remove(p string) error {
	c.touch("remove", p)
	return c.fakeSystem.Remove(p)
}

func (c *confinedSystem) Mknod(p string, mode uint32, dev uint64) error {
	c.touch("mknod", p)
	return c.fakeSystem.Mknod(p, mode, dev)
}

func (c *confinedSystem) Chmod(p string, mode uint32) error {
	c.touch("chmod", p)
	return c.fakeSystem.Chmod(p, mode)
}

func (c *confinedSystem) Lchown(p string, uid, gid int) error {
	c.touch("chown", p)
	return c.fakeSystem.Lchown(p, uid, gid)
}

func (c *confinedSystem) Symlink(target, link string) error {
	c.touch("symlink", link)
	return c.fakeSystem.Symlink(target, link)
}

func (c *confinedSystem) CopyTree(src, dst string) error {
	c.touch("copytree", src, dst)
	return c.fakeSystem.CopyTree(src, dst)
}

// fuzzWithin: p, cleaned, is root or below it.
func fuzzWithin(p, root string) bool {
	p = filepath.Clean(p)
	return p == root || strings.HasPrefix(p, root+"/")
}

// newFuzzService is a booted service on a confinedSystem whose guest has a
// few directories and files to bind and, in the container's root,
// symlinks that lead out of it, in a loop and to a guest path.
func newFuzzService(containerID string) (*Service, *confinedSystem) {
	fake := newFakeSystem()
	sys := &confinedSystem{fakeSystem: fake}
	cfg := serviceConfig{Rootfs: testRootfs, KernelRelease: "6.1.0-test", OutputLimit: 1 << 10}
	s := newService(cfg, sys, newFakeLauncher(), newLogger(io.Discard, false))
	s.setDevices = func(string, []*devconfig.Rule) error { return nil }
	for _, d := range []string{"/etc", "/run", "/z"} {
		fake.files[d] = fs.ModeDir | 0o755
	}
	fake.files["/etc/hosts"] = 0o644
	if checkContainerID(containerID) == nil {
		root := s.rootfsOf(containerID)
		fake.files[root+"/var"] = fs.ModeDir | 0o755
		fake.links[root+"/var/run"] = "/run"
		fake.links[root+"/up"] = "../../../../../.."
		fake.links[root+"/esc"] = "/../../../etc"
		fake.links[root+"/loop"] = "loop/x"
	}
	return s, sys
}

// fuzzCancelled is a done context: waits for disks end at once.
func fuzzCancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// fuzzSetup runs Setup with req on a new service and checks that it
// fails cleanly or sets the container up, touching nothing outside the
// container's root, its cgroup, /proc/sys and the share.
func fuzzSetup(t *testing.T, req *agentapi.SetupRequest) {
	id := req.ContainerId
	s, sys := newFuzzService(id)
	_, checkErr := checkSetup(id, req)
	if checkErr == nil {
		checkErr = checkContainerID(id)
	}
	if checkErr != nil && !errors.Is(checkErr, ErrInvalidArgument) {
		t.Fatalf("checkSetup(%v) = %v: not ErrInvalidArgument", req, checkErr)
	}

	_, err := s.Setup(fuzzCancelled(), req)

	var shares []string
	for _, sh := range []*agentapi.Share{req.RootShare, req.Share} {
		if sh != nil {
			shares = append(shares, filepath.Clean(sh.MountPoint))
		}
	}
	allowed := append([]string{s.rootfsOf(id), filepath.Join(filepath.Dir(testRootfs), "copyup"), cgroupRoot, procinit.ProcSys}, shares...)
	for _, op := range sys.touched {
		op, p, _ := strings.Cut(op, "\x00")
		ok := false
		for _, a := range allowed {
			ok = ok || fuzzWithin(p, a)
		}
		if !ok {
			t.Fatalf("Setup(%v) = %v: %s %q, outside %q", req, err, op, p, allowed)
		}
	}

	s.mu.Lock()
	c, reserved := s.containers[id]
	state := s.state
	s.mu.Unlock()
	if err != nil {
		if checkErr != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Setup(%v) = %v; its check failed with %v", req, err, checkErr)
		}
		if reserved || state != guestBooted {
			t.Fatalf("Setup(%v) = %v, and left container %v reserved, the guest %s", req, err, c, state)
		}
		// "A failed Setup leaves nothing mounted": the share is the VM's.
		for _, m := range sys.mountedTargets() {
			if !slices.Contains(shares, filepath.Clean(m)) {
				t.Fatalf("Setup(%v) = %v, and left %q mounted", req, err, m)
			}
		}
		return
	}
	if checkErr != nil {
		t.Fatalf("Setup(%v) passed; its check failed with %v", req, checkErr)
	}
	if c == nil || state != guestSetUp || c.rootfs != s.rootfsOf(id) {
		t.Fatalf("Setup(%v) passed: container %+v, guest %s", req, c, state)
	}
	if _, err := s.Setup(fuzzCancelled(), req); err == nil {
		t.Fatalf("Setup(%v) passed twice", req)
	}
}

// fuzzSetupSeeds are requests as the host sends them, and a few it should
// not.
func fuzzSetupSeeds() []*agentapi.SetupRequest {
	return []*agentapi.SetupRequest{
		{RootDevice: "/dev/vda", RootFstype: "btrfs"},
		{RootDevice: "/dev/vda", RootFstype: "btrfs", RootReadonly: true, Hostname: "h", Mounts: podmanMounts(),
			DeviceNodes: []*agentapi.DeviceNode{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, Mode: 0o666}},
			RootAttrs:   &agentapi.FileAttrs{Uid: 1, Gid: 1, Mode: 0o755},
			Share:       &agentapi.Share{Tag: "z", MountPoint: "/z", Fstype: "virtiofs"},
			Limits:      &agentapi.CgroupLimits{MemoryBytes: 1 << 20, Pids: 10, CpuQuotaUs: 50000},
			MaskedPaths: []string{"/proc/kcore", "/var/run/x"}, ReadonlyPaths: []string{"/proc/sys"},
			Sysctls:     map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"},
			DeviceRules: []*agentapi.DeviceRule{{Type: "a", Access: "rwm", Major: -1, Minor: -1}, {Allow: true, Type: "c", Major: 1, Minor: 3, Access: "rw"}},
			Seccomp:     make([]byte, 16), RootfsPropagation: "rslave"},
		{ContainerId: "pod1", RootShare: &agentapi.Share{Tag: "z", MountPoint: "/z", Fstype: "9p", Mmap: true}, RootPath: "1/rootfs",
			OwnPidNamespace: true, NewNamespaces: []string{"mount", "cgroup"}, JoinNamespaces: []string{"uts", "ipc"},
			Mounts: []*agentapi.Mount{{Destination: "/etc/hosts", Type: "bind", Source: "/etc/hosts", Options: []string{"rbind", "ro", "rprivate"}},
				{Destination: "/esc/tmp", Type: "tmpfs", Options: []string{"tmpcopyup", "mode=1777"}}}},
		{RootSerial: "disk1", RootFstype: "btrfs"},
		{RootDevice: "/dev/vda", RootFstype: "btrfs", Mounts: []*agentapi.Mount{{Destination: "/loop/a", Type: "tmpfs"}}},
		{RootDevice: "/dev/vda", RootFstype: "btrfs", DeviceNodes: []*agentapi.DeviceNode{{Path: "/up/../x", Type: "b", Mode: 0o10000}}},
		{RootDevice: "/dev/vda", RootFstype: "btrfs", Sysctls: map[string]string{"a..b": "1"}},
		{RootDevice: "/dev/vda", RootFstype: "btrfs", DeviceRules: []*agentapi.DeviceRule{{Type: "x", Access: "q", Major: -2}}},
		{ContainerId: "..", RootDevice: "/dev/vda", RootFstype: "btrfs"},
		{JoinNamespaces: []string{"uts"}, NewNamespaces: []string{"net"}, RootfsPropagation: "bogus", Seccomp: make([]byte, 7)},
	}
}

// FuzzSetupRequest decodes a SetupRequest as ttrpc does and gives it to
// Setup on a fake guest.
func FuzzSetupRequest(f *testing.F) {
	for _, req := range fuzzSetupSeeds() {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req agentapi.SetupRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return
		}
		fuzzSetup(t, &req)
	})
}

// validProcessRequest is what CreateProcess must accept: an id, and a
// process_json that the runtime-spec allows (config.md process).
func validProcessRequest(req *agentapi.CreateProcessRequest) bool {
	var p specs.Process
	if req.Id == "" || json.Unmarshal(req.ProcessJson, &p) != nil {
		return false
	}
	if len(p.Args) == 0 || p.Args[0] == "" || !strings.HasPrefix(p.Cwd, "/") {
		return false
	}
	seen := map[string]bool{}
	for _, r := range p.Rlimits {
		if _, ok := procinit.RlimitResources[r.Type]; !ok || seen[r.Type] || r.Soft > r.Hard {
			return false
		}
		seen[r.Type] = true
	}
	return true
}

// fuzzCreateProcess gives req to a guest that is not set up: a valid
// request gets as far as that (ErrFailedPrecondition), an invalid one
// is ErrInvalidArgument.
func fuzzCreateProcess(t *testing.T, req *agentapi.CreateProcessRequest) {
	s, _ := newFuzzService("")
	resp, err := s.CreateProcess(context.Background(), req)
	if err == nil || resp != nil {
		t.Fatalf("CreateProcess(%v) before Setup = %v, %v", req, resp, err)
	}
	if validProcessRequest(req) {
		if !errors.Is(err, ErrFailedPrecondition) {
			t.Fatalf("CreateProcess(%v) = %v, want ErrFailedPrecondition (no Setup)", req, err)
		}
	} else if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("CreateProcess(%v) = %v, want ErrInvalidArgument", req, err)
	}
}

// FuzzCreateProcessRequest decodes a CreateProcessRequest as ttrpc does.
func FuzzCreateProcessRequest(f *testing.F) {
	for _, req := range []*agentapi.CreateProcessRequest{
		{Id: "c1", ProcessJson: []byte(`{"args":["sh"],"cwd":"/"}`)},
		{Id: "exec1", ContainerId: "pod1", ProcessJson: []byte(`{"terminal":true,"args":["ls","-l"],"cwd":"/tmp","env":["A=b"],` +
			`"rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":4096}],"user":{"uid":1,"gid":1}}`)},
		{ProcessJson: []byte(`{"args":["sh"],"cwd":"/"}`)},
		{Id: "x", ProcessJson: []byte(`{"args":["sh"],"cwd":"rel"}`)},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req agentapi.CreateProcessRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return
		}
		fuzzCreateProcess(t, &req)
	})
}

// FuzzProcessJSON fuzzes process_json itself, which the protobuf
// framing otherwise hides from most mutations.
func FuzzProcessJSON(f *testing.F) {
	for _, s := range []string{
		`{"args":["sh"],"cwd":"/"}`,
		`{"terminal":true,"consoleSize":{"height":24,"width":80},"user":{"uid":0,"gid":0,"additionalGids":[1]},"args":["/bin/sh","-c","true"],` +
			`"env":["PATH=/bin"],"cwd":"/root","capabilities":{"bounding":["CAP_KILL"]},"rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024},` +
			`{"type":"RLIMIT_CORE","hard":0,"soft":0}],"noNewPrivileges":true,"oomScoreAdj":100}`,
		`{"args":[],"cwd":"/"}`,
		`{"args":[""],"cwd":"/"}`,
		`{"args":["sh"],"cwd":""}`,
		`{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_FOO","hard":1,"soft":1}]}`,
		`{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_NPROC","hard":1,"soft":2}]}`,
		`{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_NPROC"},{"type":"RLIMIT_NPROC"}]}`,
		`{"args":"sh"}`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, processJSON []byte) {
		fuzzCreateProcess(t, &agentapi.CreateProcessRequest{Id: "p", ProcessJson: processJSON})
	})
}
