package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// TestRunBusybox runs the busybox bundle in VMs and checks what runc run's
// caller would see: the two output streams, stdin, exit codes, env, cwd,
// and user. Each case is its own VM; they run in parallel.
func TestRunBusybox(t *testing.T) {
	needVMs(t)
	type tc struct {
		name       string
		args       []string
		edit       func(*specs.Spec)
		stdin      []byte
		wantOut    string
		wantErr    string
		wantStatus int
	}
	cases := []tc{
		{name: "stdout-and-stderr", args: []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; echo more-stdout"},
			wantOut: "to-stdout\nmore-stdout\n", wantErr: "to-stderr\n", wantStatus: 0},
		{name: "exit-3", args: []string{"sh", "-c", "echo bye; exit 3"}, wantOut: "bye\n", wantStatus: 3},
		// Without a PID namespace of its own (the VM's) the shell is not
		// PID 1 and dies of its SIGKILL; as PID 1 of its own it survives
		// it, as under runc.
		{name: "killed-by-sigkill", args: []string{"sh", "-c", "kill -9 $$; echo not-reached"}, wantStatus: 137,
			edit: func(s *specs.Spec) {
				s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.PIDNamespace })
			}},
		{name: "sigkill-self-as-pid-1", args: []string{"sh", "-c", "kill -9 $$; echo survived"}, wantOut: "survived\n"},
		// A cgroup namespace of its own: its cgroup is the root there,
		// and the cgroup2 mounted at /sys/fs/cgroup is that cgroup, which
		// holds only the container's process (sh execs grep).
		{name: "cgroup-namespace", args: []string{"sh", "-c", "cat /proc/self/cgroup; grep -c ^ /sys/fs/cgroup/cgroup.procs"},
			edit: func(s *specs.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "ro"}})
			},
			wantOut: "0::/\n1\n"},
		// linux.devices are made in the container's /dev.
		{name: "spec-devices", args: []string{"sh", "-c", "stat -c '%t,%T %a %u:%g' /dev/mynull; echo x > /dev/mynull && echo written"},
			edit: func(s *specs.Spec) {
				mode, uid := os.FileMode(0o640), uint32(1000)
				s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3, FileMode: &mode, UID: &uid})
			},
			wantOut: "1,3 640 1000:0\nwritten\n"},
		// The spec's seccomp profile holds in the guest: mkdir(2) and
		// mkdirat(2) fail with the rule's errno (EACCES), the rest runs.
		{name: "seccomp-errno", args: []string{"sh", "-c", "mkdir /tmp/x 2>&1; grep ^Seccomp: /proc/self/status"},
			edit: func(s *specs.Spec) {
				eacces := uint(13)
				s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
					{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eacces}}}
			},
			wantOut: "mkdir: can't create directory '/tmp/x': Permission denied\nSeccomp:\t2\n"},
		{name: "stdin-through-cat", args: []string{"cat"}, stdin: []byte("line one\nline two\n\x00binary\xff\n"),
			wantOut: "line one\nline two\n\x00binary\xff\n"},
		{name: "env-cwd-user", args: []string{"sh", "-c", `echo "FOO=$FOO"; pwd; id -u; id -g; id -G; echo "HOME=$HOME"`},
			edit: func(s *specs.Spec) {
				s.Process.Env = append(s.Process.Env, "FOO=bar baz", "HOME=/tmp")
				s.Process.Cwd = "/etc"
				s.Process.User.UID, s.Process.User.GID = 1000, 1000
				s.Process.User.AdditionalGids = []uint32{10, 20}
			},
			wantOut: "FOO=bar baz\n/etc\n1000\n1000\n1000 10 20\nHOME=/tmp\n"},
		{name: "rootfs-attributes", args: []string{"sh", "-c", "stat -c '%a %u:%g' /; stat -c '%t,%T %a %F' /lib/null-dev; echo x > /lib/null-dev && echo writable; ls /dev/null /dev/zero /dev/urandom; hostname"},
			wantOut: "751 0:0\n1,3 640 character special file\nwritable\n/dev/null\n/dev/urandom\n/dev/zero\ninitos\n"},
		{name: "command-not-found", args: []string{"no-such-command"}, wantStatus: -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := busyboxSpec(t, c.args...)
			if c.edit != nil {
				c.edit(s)
			}
			id := "bb-" + c.name
			r := runtimeCmd(t, c.stdin, "run", "--bundle", writeBundle(t, s), id)
			defer assertNothingLeft(t, id)
			if c.wantStatus == -1 {
				// runc run fails (status 1..127, never 0) and names the executable.
				if r.code == 0 || !strings.Contains(string(r.stderr), "no-such-command") {
					t.Fatalf("exit %d, stderr %q: want a failure naming the missing executable", r.code, r.stderr)
				}
				return
			}
			if r.code != c.wantStatus {
				t.Errorf("exit status %d, want %d; stderr:\n%s", r.code, c.wantStatus, r.stderr)
			}
			if string(r.stdout) != c.wantOut {
				t.Errorf("stdout %q, want %q", r.stdout, c.wantOut)
			}
			if string(r.stderr) != c.wantErr {
				t.Errorf("stderr %q, want %q", r.stderr, c.wantErr)
			}
		})
	}
}

// TestRunRootfsModes runs one bundle with each rootfs mode: "share" (the
// default) writes into the bundle's rootfs as runc does; "disk" boots a
// btrfs copy (device nodes and the root's owner and mode restored in the
// guest), whose writes never reach the bundle.
func TestRunRootfsModes(t *testing.T) {
	needVMs(t)
	for _, mode := range []string{runtime.RootfsShare, runtime.RootfsDisk} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := busyboxSpec(t, "sh", "-c", "stat -c '%a %u:%g' /; stat -c '%t,%T %F' /lib/null-dev; echo written > /new-file; rm /etc/passwd; sync; cat /new-file")
			dir := writeBundle(t, s)
			config := writeConfig(t, func(c *runtime.Config) { c.Rootfs = mode })
			id := "bb-rootfs-" + mode
			r := runtimeCmdWith(t, config, nil, "run", "--bundle", dir, id)
			defer assertNothingLeft(t, id)
			if want := "751 0:0\n1,3 character special file\nwritten\n"; r.code != 0 || string(r.stdout) != want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0, %q", r.code, r.stdout, r.stderr, want)
			}
			got, err := os.ReadFile(filepath.Join(s.Root.Path, "new-file"))
			_, passwdErr := os.Stat(filepath.Join(s.Root.Path, "etc", "passwd"))
			if mode == runtime.RootfsShare {
				if err != nil || string(got) != "written\n" || !os.IsNotExist(passwdErr) {
					t.Errorf("bundle rootfs after the run: new-file %q (%v), /etc/passwd %v; want the container's write and removal", got, err, passwdErr)
				}
				return
			}
			if !os.IsNotExist(err) || passwdErr != nil {
				t.Errorf("bundle rootfs after a disk run: new-file %q (%v), /etc/passwd %v; want it untouched", got, err, passwdErr)
			}
		})
	}
}

// TestRunRootfsFull writes 1 GiB into a shared rootfs whose host
// filesystem (a tmpfs of the test's) holds 1.25 GiB, then more: the 1 GiB
// file reaches the host whole, the writer of the rest gets ENOSPC at once
// (no hang), and space the container frees is usable again (within a
// moment: virtiofsd frees a deleted file's inode once the guest forgets it).
func TestRunRootfsFull(t *testing.T) {
	needVMs(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs")
	}
	fsDir := t.TempDir()
	if err := unix.Mount("tmpfs", fsDir, "tmpfs", 0, "size=1280m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(fsDir, unix.MNT_DETACH)
	s := busyboxSpec(t, "sh", "-c", `dd if=/dev/zero of=/big bs=1M count=1024 conv=fsync 2>/dev/null && echo big-ok
out=$(dd if=/dev/zero of=/more bs=1M count=512 conv=fsync 2>&1); echo "more-status=$?"; echo "$out" | grep -o 'No space left on device' | head -1
rm /more
# virtiofsd holds a deleted file's inode until the guest forgets it.
i=0; until dd if=/dev/zero of=/again bs=1M count=64 conv=fsync 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
[ $i -lt 100 ] && echo again-ok`)
	rootfs := filepath.Join(fsDir, "rootfs")
	if out, err := exec.Command("cp", "-a", s.Root.Path, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copying the rootfs onto the tmpfs: %v\n%s", err, out)
	}
	s.Root.Path = rootfs
	id := "bb-rootfs-full"
	r := runtimeCmd(t, nil, "run", "--bundle", writeBundle(t, s), id)
	defer assertNothingLeft(t, id)
	if want := "big-ok\nmore-status=1\nNo space left on device\nagain-ok\n"; r.code != 0 || string(r.stdout) != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0, %q", r.code, r.stdout, r.stderr, want)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "big")); err != nil || fi.Size() != 1<<30 {
		t.Errorf("the 1 GiB file on the host: %v, %v", fi, err)
	}
}

// TestRunLargeOutput checks that 10 MB of output (text and binary) arrives
// byte-exact and in order on stdout, while stderr stays separate.
func TestRunLargeOutput(t *testing.T) {
	needVMs(t)
	t.Parallel()
	const n = 1250000 // seq 1..n is 9.6 MB of text
	s := busyboxSpec(t, "sh", "-c", fmt.Sprintf("seq 1 %d; cat /bin/busybox; echo done >&2", n))
	id := "bb-large-output"
	r := runtimeCmd(t, nil, "run", "--bundle", writeBundle(t, s), id)
	defer assertNothingLeft(t, id)
	var want bytes.Buffer
	for i := 1; i <= n; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteByte('\n')
	}
	bb, err := os.ReadFile(filepath.Join(env.busybox, "rootfs", "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	want.Write(bb)
	if want.Len() < 10<<20 {
		t.Fatalf("test data is only %d bytes", want.Len())
	}
	if r.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", r.code, r.stderr)
	}
	if !bytes.Equal(r.stdout, want.Bytes()) {
		t.Fatalf("stdout: %d bytes (sha256 %x), want %d bytes (sha256 %x)", len(r.stdout), sha256.Sum256(r.stdout), want.Len(), sha256.Sum256(want.Bytes()))
	}
	if string(r.stderr) != "done\n" {
		t.Errorf("stderr %q, want %q", r.stderr, "done\n")
	}
}

// TestRunDebianMinbase runs dpkg -l in a Debian minbase image built with
// debootstrap (scripts/minbase.sh; INITOS_MINBASE names it).
func TestRunDebianMinbase(t *testing.T) {
	needVMs(t)
	root := os.Getenv("INITOS_MINBASE")
	if root == "" {
		if os.Getenv("INITOS_INTEGRATION") == "1" {
			t.Fatal("INITOS_MINBASE is not set: scripts/test.sh builds the Debian minbase image and sets it")
		}
		t.Skip("INITOS_MINBASE not set (scripts/minbase.sh DIR builds one)")
	}
	t.Parallel()
	s := busyboxSpec(t, "sh", "-c", "dpkg -l | tail -n +6 | wc -l; dpkg -l dpkg | tail -1; cat /etc/debian_version")
	s.Root.Path = root
	s.Process.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	id := "debian-minbase"
	r := runtimeCmd(t, nil, "run", "--bundle", writeBundle(t, s), id)
	defer assertNothingLeft(t, id)
	if r.code != 0 {
		t.Fatalf("exit status %d; stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
	if len(lines) != 3 {
		t.Fatalf("stdout %q: want 3 lines", r.stdout)
	}
	count, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || count < 50 {
		t.Errorf("dpkg -l listed %q packages, want a minbase system (at least 50)", lines[0])
	}
	if !strings.HasPrefix(lines[1], "ii  dpkg ") {
		t.Errorf("dpkg -l dpkg: %q, want it installed (ii)", lines[1])
	}
	if !strings.HasPrefix(lines[2], "12.") {
		t.Errorf("/etc/debian_version %q, want bookworm (12.x)", lines[2])
	}
}

// TestRunErrors checks that bad input fails before any VM starts, with an
// error naming the problem, and leaves nothing behind.
func TestRunErrors(t *testing.T) {
	needVMs(t)
	t.Parallel()
	s := busyboxSpec(t, "true")
	s.Process.Cwd = "relative/dir"
	r := runtimeCmd(t, nil, "run", "--bundle", writeBundle(t, s), "bad-cwd")
	if r.code == 0 || !strings.Contains(string(r.stderr), "cwd") {
		t.Errorf("relative cwd: exit %d, stderr %q: want an error naming cwd", r.code, r.stderr)
	}
	assertNothingLeft(t, "bad-cwd")

	r = runtimeCmd(t, nil, "run", "--bundle", t.TempDir(), "no-config")
	if r.code == 0 || !strings.Contains(string(r.stderr), "config.json") {
		t.Errorf("missing config.json: exit %d, stderr %q", r.code, r.stderr)
	}
	assertNothingLeft(t, "no-config")
}

// TestRunBootDeadline checks that a VM that does not reach its agent in
// time is killed and the error shows the console's last lines.
func TestRunBootDeadline(t *testing.T) {
	needVMs(t)
	t.Parallel()
	cfg := env.cfg
	cfg.BootTimeout = runtime.Duration(50 * time.Millisecond)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	id := "bb-boot-deadline"
	out, err := exec.Command(env.bin, "--config", conf, "run", "--bundle", writeBundle(t, busyboxSpec(t, "true")), id).CombinedOutput()
	if err == nil {
		t.Fatalf("run succeeded within a 50ms boot deadline:\n%s", out)
	}
	for _, want := range []string{"guest agent not ready before the deadline", `container "bb-boot-deadline" after 50ms`, "last console output"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error lacks %q:\n%s", want, out)
		}
	}
	assertNothingLeft(t, id)
}

// TestCheck runs `initos-runtime check` on this host.
func TestCheck(t *testing.T) {
	needVMs(t)
	cmd := exec.Command(env.bin, "--config", env.config, "check")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{"kvm", "qemu", "vmm", "kernel", "agent", "mkfs.btrfs"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

// TestRunDiskFull builds a container's disk image (config rootfs "disk")
// on a host filesystem too small for it: create fails with an error that
// says so, leaves no partial image, state or process, and a container that
// was running meanwhile keeps running.
func TestRunDiskFull(t *testing.T) {
	needVMs(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs")
	}
	t.Parallel()
	// A data dir of its own whose disks/ is a 16 MiB tmpfs; the kernel and
	// initrd cache is the run's.
	data := t.TempDir()
	if err := os.Symlink(filepath.Join(env.cfg.DataDir, "cache"), filepath.Join(data, "cache")); err != nil {
		t.Fatal(err)
	}
	disks := filepath.Join(data, "disks")
	if err := os.Mkdir(disks, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", disks, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(disks, unix.MNT_DETACH)
	config := writeConfig(t, func(c *runtime.Config) { c.DataDir, c.Rootfs = data, runtime.RootfsDisk })

	// The bystander: a running container of the run's config.
	other := "bb-disk-full-other"
	defer assertNothingLeft(t, other)
	defer runtimeCmd(t, nil, "delete", "--force", other)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(env.bin, "--config", env.config, "run", "--detach", "--bundle", writeBundle(t, busyboxSpec(t, "sleep", "3600")), other)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run --detach %s: %v", other, err)
	}

	// 32 MiB of data in a rootfs whose image may take 16 MiB.
	s := busyboxSpec(t, "true")
	if err := os.WriteFile(filepath.Join(s.Root.Path, "big"), bytes.Repeat([]byte("initos!\n"), 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	id := "bb-disk-full"
	r := runtimeCmdWith(t, config, nil, "run", "--bundle", writeBundle(t, s), id)
	if r.code == 0 || !strings.Contains(string(r.stderr), "is full: no space left on device") {
		t.Errorf("run with a full disk: exit %d, stderr %q; want an error saying no space is left", r.code, r.stderr)
	}
	assertNothingLeft(t, id)
	if ents, err := os.ReadDir(disks); err != nil || len(ents) > 0 {
		t.Errorf("disks dir after the failure: %v, %v; want it empty", ents, err)
	}
	if r := runtimeCmd(t, nil, "exec", other, "echo", "still-here"); r.code != 0 || string(r.stdout) != "still-here\n" {
		t.Errorf("the bystander after the failure: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
