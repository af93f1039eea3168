package qemu

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/initos-runtime/initos-runtime/initrd"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// testKernel finds the real-VM tests' guest kernel: the one the runtime
// boots (INITOS_KERNEL_ROOT, else the runtime's default: Debian's package
// unpacked by scripts/fetch-kernel.sh), with its ELF vmlinux, which boots
// much faster than the bzImage, extracted once into a cache of the tests'
// (INITOS_VMLINUX may name one instead).
var testKernel = sync.OnceValues(func() (*initrd.Kernel, error) {
	root := os.Getenv("INITOS_KERNEL_ROOT")
	if root == "" {
		root = "/var/lib/initos-runtime/kernel"
	}
	return initrd.FindKernel(root)
})

var testVmlinux = sync.OnceValues(func() (string, error) {
	if k := os.Getenv("INITOS_VMLINUX"); k != "" {
		return k, nil
	}
	k, err := testKernel()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "initos-qemu-tests")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return initrd.Vmlinux(k, dir)
})

// modulesDir is where makeInitrd finds the guest kernel's modules.
func modulesDir(t *testing.T) string {
	k, err := testKernel()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(k.ModulesDir, "kernel")
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := vmm.Config{ID: "t", Kernel: kernel, MemoryMiB: 128, CPUs: 1, StateDir: filepath.Join(dir, "s"), ConsoleLog: filepath.Join(dir, "c.log")}
	tcg := &vmm.Accel{Name: vmm.AccelTCG}

	if _, err := New(vmm.Config{}, Options{}); !errors.Is(err, vmm.ErrInvalidConfig) {
		t.Errorf("New(empty config) = %v, want ErrInvalidConfig", err)
	}
	if _, err := New(cfg, Options{Binary: "/nonexistent/qemu", Accel: tcg}); err == nil || !strings.Contains(err.Error(), "finding qemu") {
		t.Errorf("New(missing binary) = %v", err)
	}
	vfs := cfg
	vfs.Shares = []vmm.Share{{Dir: dir, Tag: "z", Mode: vmm.ShareVirtiofs}}
	if _, err := New(vfs, Options{Binary: "/bin/true", Virtiofsd: "/nonexistent/virtiofsd", Accel: tcg}); !errors.Is(err, vmm.ErrNoVirtiofsd) {
		t.Errorf("New(virtiofs without virtiofsd) = %v, want ErrNoVirtiofsd", err)
	}

	v, err := New(cfg, Options{Binary: "/bin/true", Accel: tcg, TSCKHz: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(v.Args(), " "); !strings.Contains(a, "tsc_early_khz=1000") || !strings.Contains(a, "-accel tcg,thread=multi") {
		t.Errorf("Args = %s", a)
	}
	ctx := context.Background()
	if _, err := v.DialAgent(ctx); !errors.Is(err, vmm.ErrNotStarted) {
		t.Errorf("DialAgent before Start = %v", err)
	}
	if err := v.Pause(ctx); !errors.Is(err, vmm.ErrNotStarted) {
		t.Errorf("Pause before Start = %v", err)
	}
	if err := v.Wait(); !errors.Is(err, vmm.ErrNotStarted) {
		t.Errorf("Wait before Start = %v", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("Stop before Start = %v", err)
	}
	if v.Pid() != 0 {
		t.Errorf("Pid before Start = %d", v.Pid())
	}
}

// --- real VMs ---------------------------------------------------------

func needQemu(t *testing.T) (kernel string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM (several seconds under TCG); skipped with -short")
	}
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skipf("%s not installed", DefaultBinary)
	}
	if _, err := testKernel(); err != nil {
		t.Skipf("no guest kernel: %v", err)
	}
	k, err := testVmlinux()
	if err != nil {
		t.Fatalf("extracting the guest kernel's vmlinux: %v", err)
	}
	return k
}

// cpioEntry is one file of a newc archive; mode includes the type bits.
type cpioEntry struct {
	name string
	mode uint32
	data []byte
}

// writeCpio writes entries as a newc ("070701") archive.
func writeCpio(w io.Writer, entries []cpioEntry) error {
	pad := func(n int) []byte { return make([]byte, (4-n%4)%4) }
	write := func(ino int, e cpioEntry) error {
		name := e.name + "\x00"
		nlink := 1
		if e.mode&0o170000 == 0o040000 {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, 0, 0, len(name), 0)
		for _, b := range [][]byte{[]byte(hdr), []byte(name), pad(len(hdr) + len(name)), e.data, pad(len(e.data))} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	for i, e := range entries {
		if err := write(i+1, e); err != nil {
			return err
		}
	}
	return write(0, cpioEntry{name: "TRAILER!!!"})
}

// makeInitrd builds an initrd with busybox, the given kernel modules
// (loaded by the script in the order given) and /init running script.
func makeInitrd(t *testing.T, script string, modules ...string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static: %v", err)
	}
	entries := []cpioEntry{
		{name: "bin", mode: 0o040755},
		{name: "bin/busybox", mode: 0o100755, data: bb},
		{name: "lib", mode: 0o040755},
		{name: "lib/modules", mode: 0o040755},
	}
	var load strings.Builder
	for _, m := range modules {
		var found string
		_ = filepath.WalkDir(modulesDir(t), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == m+".ko" {
				found = p
				return filepath.SkipAll
			}
			return nil
		})
		if found == "" {
			t.Fatalf("module %s not under %s", m, modulesDir(t))
		}
		b, err := os.ReadFile(found)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, cpioEntry{name: "lib/modules/" + m + ".ko", mode: 0o100644, data: b})
		fmt.Fprintf(&load, "insmod /lib/modules/%s.ko || echo INSMOD-FAILED %s\n", m, m)
	}
	init := "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n" +
		"mkdir -p /proc /sys /dev /z\nmount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n" +
		load.String() + script
	entries = append(entries, cpioEntry{name: "init", mode: 0o100755, data: []byte(init)})

	path := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeCpio(f, entries); err != nil {
		t.Fatal(err)
	}
	return path
}

func testConfig(t *testing.T, kernel, initrd string) vmm.Config {
	dir := t.TempDir()
	return vmm.Config{
		ID: "t", Kernel: kernel, Initrd: initrd, Cmdline: "initos.test=1",
		MemoryMiB: 256, CPUs: 2,
		StateDir: filepath.Join(dir, "state"), ConsoleLog: filepath.Join(dir, "console.log"),
	}
}

// waitExit waits for v.Wait with a bound, so a hung guest fails the test
// instead of hanging it.
func waitExit(t *testing.T, v *VM, d time.Duration) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- v.Wait() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		_ = v.Stop(context.Background())
		t.Fatalf("VM still running after %s; console:\n%s", d, vmm.ConsoleTail(v.cfg.ConsoleLog, 30))
		return nil
	}
}

// sockets are all the sockets Stop must remove.
func sockets(v *VM) []string {
	return v.sup.SocketPaths()
}

func assertClean(t *testing.T, v *VM, pid int) {
	t.Helper()
	for _, s := range sockets(v) {
		if _, err := os.Lstat(s); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind (%v)", s, err)
		}
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu pid %d still exists (%v)", pid, err)
	}
}

// TestBoot boots the real kernel into an /init that prints a marker and
// powers off; it measures the boot.
func TestBoot(t *testing.T) {
	kernel := needQemu(t)
	initrd := makeInitrd(t, "echo INITOS-MARKER-$((6*7))\npoweroff -f\n")
	cfg := testConfig(t, kernel, initrd)
	v, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accel %s (%s)", v.Accel().Name, v.Accel().Reason)
	ctx := context.Background()
	t0 := time.Now()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	started := time.Since(t0)
	pid := v.Pid()
	if err := v.Start(ctx); !errors.Is(err, vmm.ErrAlreadyStarted) {
		t.Errorf("second Start = %v, want ErrAlreadyStarted", err)
	}
	if err := waitExit(t, v, 90*time.Second); err != nil {
		t.Fatalf("Wait = %v, want nil for a guest that powered off", err)
	}
	total := time.Since(t0)
	console, _ := os.ReadFile(cfg.ConsoleLog)
	if !strings.Contains(string(console), "INITOS-MARKER-42") {
		t.Fatalf("marker missing from console:\n%s", console)
	}
	t.Logf("kernel %s: qemu running after %s, guest powered off after %s", filepath.Base(kernel), started.Round(time.Millisecond), total.Round(time.Millisecond))

	if _, err := v.DialAgent(ctx); !errors.Is(err, vmm.ErrVMExited) || !strings.Contains(err.Error(), "INITOS-MARKER-42") {
		t.Errorf("DialAgent after exit = %v, want ErrVMExited with the console tail", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	assertClean(t, v, pid)
}

// TestStartFailure: qemu refusing the config makes Start fail with
// qemu's own message, leaving nothing behind.
func TestStartFailure(t *testing.T) {
	cfg := testConfig(t, needQemu(t), "")
	cfg.Kernel = filepath.Join(t.TempDir(), "not-a-kernel")
	if err := os.WriteFile(cfg.Kernel, []byte("this is no kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = v.Start(context.Background())
	if !errors.Is(err, vmm.ErrVMExited) || !strings.Contains(err.Error(), "qemu (pid") || !strings.Contains(err.Error(), "kernel") {
		t.Fatalf("Start = %v, want ErrVMExited with qemu's log", err)
	}
	t.Logf("Start error: %v", err)
	if v.Pid() != 0 {
		t.Errorf("Pid after failed Start = %d", v.Pid())
	}
	for _, s := range sockets(v) {
		if _, err := os.Lstat(s); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind", s)
		}
	}
}

// TestNoAgent: a guest that never serves the agent. qemu accepts the
// agent connection anyway, so the handshake's deadline is what fails,
// and the error carries the console tail. The same VM then checks the
// state-dir guard, pause/resume and Stop.
func TestNoAgent(t *testing.T) {
	kernel := needQemu(t)
	initrd := makeInitrd(t, "echo NO-AGENT-HERE\nwhile true; do sleep 1; done\n")
	cfg := testConfig(t, kernel, initrd)
	v, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := v.Pid()
	defer v.Stop(ctx)

	// Wait for the guest to print, so the tail has something to show.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(vmm.ConsoleTail(cfg.ConsoleLog, 5), "NO-AGENT-HERE") {
		if time.Now().After(deadline) {
			t.Fatalf("guest never printed; console:\n%s", vmm.ConsoleTail(cfg.ConsoleLog, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}

	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t0 := time.Now()
	err = pingAgent(hctx, v)
	if !errors.Is(err, vmm.ErrAgentTimeout) || !strings.Contains(err.Error(), "NO-AGENT-HERE") {
		t.Fatalf("handshake = %v, want ErrAgentTimeout with the console tail", err)
	}
	if d := time.Since(t0); d < 1900*time.Millisecond || d > 5*time.Second {
		t.Errorf("handshake failed after %s, want at the 2s deadline", d)
	}
	t.Logf("handshake error: %v", err)

	other, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(ctx); !errors.Is(err, vmm.ErrStateDirInUse) {
		t.Errorf("second VM on the same state dir: Start = %v, want ErrStateDirInUse", err)
	}

	for _, step := range []struct {
		do   func(context.Context) error
		want string
	}{{v.Pause, "paused"}, {v.Resume, "running"}} {
		if err := step.do(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := v.qmpStatus(ctx)
		if err != nil || st != step.want {
			t.Errorf("status = %q, %v; want %q", st, err, step.want)
		}
	}

	sctx, cancel2 := context.WithTimeout(ctx, 15*time.Second)
	defer cancel2()
	if err := v.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, v, 5*time.Second); err != nil {
		t.Errorf("Wait after Stop = %v, want nil", err)
	}
	assertClean(t, v, pid)
	if err := v.Pause(ctx); !errors.Is(err, vmm.ErrVMExited) {
		t.Errorf("Pause after Stop = %v, want ErrVMExited", err)
	}
}

// pingAgent stands in for the runtime's first agent call: dial, send a
// request, wait for any reply until ctx's deadline.
func pingAgent(ctx context.Context, v *VM) error {
	c, err := v.DialAgent(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return fmt.Errorf("%w: %v; last console output:\n%s", vmm.ErrAgentTimeout, err, vmm.ConsoleTail(v.cfg.ConsoleLog, 10))
	}
	return nil
}

// devicesScript checks the disks, the share, the NIC and the agent port
// from inside the guest, printing KEY=VALUE lines, then powers off.
const devicesScript = `
echo "VDA=$(head -c 12 /dev/vda)"
echo "VDB=$(head -c 12 /dev/vdb)"
if echo x | dd of=/dev/vdb bs=1 count=1 conv=notrunc 2>/dev/null; then echo VDB=WRITABLE; else echo VDB=READONLY; fi
if [ -n "$SHARE_TYPE" ]; then
  mount -t $SHARE_TYPE $SHARE_OPTS z /z && echo "SHARE=$(cat /z/hello)" && echo from-guest > /z/back
fi
[ -e /sys/class/net/eth0/address ] && echo "MAC=$(cat /sys/class/net/eth0/address)"
port=
for i in $(seq 50); do
  for n in /sys/class/virtio-ports/*/name; do
    [ -e "$n" ] && [ "$(cat $n)" = org.initos.agent ] && port=/dev/$(basename $(dirname $n))
  done
  [ -n "$port" ] && break
  sleep 0.1
done
echo "PORT=$port"
exec 3<>$port
read -r line <&3
echo "GOT=$line"
echo "AGENT-HELLO $line" >&3
read -r line <&3
echo "PONG $line" >&3
sleep 1
poweroff -f
`

func rawDisk(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "disk.img")
	b := make([]byte, 1<<20)
	copy(b, content)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runDevices boots cfg with devicesScript and talks to its agent port.
func runDevices(t *testing.T, cfg vmm.Config) string {
	t.Helper()
	v, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := v.Pid()
	defer v.Stop(ctx)

	actx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	c, err := v.DialAgent(actx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dl, _ := actx.Deadline()
	_ = c.SetDeadline(dl)
	// Written long before the guest opens its port: it must wait in the
	// socket, not get lost.
	if _, err := c.Write([]byte("ping-42\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	hello, err := r.ReadString('\n')
	if err != nil || hello != "AGENT-HELLO ping-42\n" {
		t.Fatalf("first line from the guest = %q, %v; console:\n%s", hello, err, vmm.ConsoleTail(cfg.ConsoleLog, 30))
	}
	if _, err := c.Write([]byte("second\n")); err != nil {
		t.Fatal(err)
	}
	if pong, err := r.ReadString('\n'); err != nil || pong != "PONG second\n" {
		t.Errorf("reply = %q, %v", pong, err)
	}
	if err := waitExit(t, v, 60*time.Second); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	assertClean(t, v, pid)
	console, _ := os.ReadFile(cfg.ConsoleLog)
	if strings.Contains(string(console), "INSMOD-FAILED") {
		t.Errorf("a module failed to load:\n%s", console)
	}
	return strings.ReplaceAll(string(console), "\r", "")
}

func wantLines(t *testing.T, console string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(console, "\n"+l+"\n") && !strings.HasPrefix(console, l+"\n") {
			t.Errorf("console lacks line %q:\n%s", l, console)
		}
	}
}

var baseModules = []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console"}

// TestDevices9p: two disks (the second read-only) in order, a 9p share
// written both ways, a tap NIC with its MAC, and the agent port both ways.
func TestDevices9p(t *testing.T) {
	kernel := needQemu(t)
	mods := append(append([]string{}, baseModules...), "netfs", "fscache", "9pnet", "9p", "9pnet_virtio", "failover", "net_failover", "virtio_net")
	initrd := makeInitrd(t, "SHARE_TYPE=9p\nSHARE_OPTS='-o trans=virtio,version=9p2000.L,msize=262144'\n"+devicesScript, mods...)
	cfg := testConfig(t, kernel, initrd)
	cfg.Disks = []vmm.Disk{{Path: rawDisk(t, "FIRST-DISK")}, {Path: rawDisk(t, "SECOND-DISK"), ReadOnly: true}}
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "hello"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Shares = []vmm.Share{{Dir: share, Tag: "z", Mode: vmm.Share9p}}
	mac := "02:00:00:aa:bb:cc"
	if tap := makeTap(t); tap != "" {
		cfg.NICs = []vmm.NIC{{Tap: tap, MAC: mac}}
	}

	console := runDevices(t, cfg)
	wantLines(t, console, "VDA=FIRST-DISK", "VDB=SECOND-DISK", "VDB=READONLY", "SHARE=from-host", "GOT=ping-42")
	if len(cfg.NICs) > 0 {
		wantLines(t, console, "MAC="+mac)
	}
	if b, err := os.ReadFile(filepath.Join(share, "back")); err != nil || string(b) != "from-guest\n" {
		t.Errorf("file the guest wrote to the share = %q, %v", b, err)
	}
}

// makeTap creates a tap for the test and removes it afterwards; "" when
// the host cannot (not root, no /dev/net/tun).
func makeTap(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Log("not root: testing without a NIC")
		return ""
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "vmmt" + hex.EncodeToString(b[:])
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP,
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Logf("creating tap %s: %v: testing without a NIC", name, err)
		return ""
	}
	t.Cleanup(func() {
		if err := netlink.LinkDel(tap); err != nil {
			t.Errorf("removing tap %s: %v", name, err)
		}
	})
	return name
}

// TestDevicesVirtiofs: the share through virtiofsd (needs root).
func TestDevicesVirtiofs(t *testing.T) {
	kernel := needQemu(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: virtiofsd sandboxes itself in namespaces")
	}
	if _, err := vmm.FindVirtiofsd(""); err != nil {
		t.Skip(err)
	}
	mods := append(append([]string{}, baseModules...), "fuse", "virtiofs")
	initrd := makeInitrd(t, "SHARE_TYPE=virtiofs\nSHARE_OPTS=\n"+devicesScript, mods...)
	cfg := testConfig(t, kernel, initrd)
	cfg.Disks = []vmm.Disk{{Path: rawDisk(t, "FIRST-DISK")}, {Path: rawDisk(t, "SECOND-DISK"), ReadOnly: true}}
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "hello"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Shares = []vmm.Share{{Dir: share, Tag: "z", Mode: vmm.ShareVirtiofs}}

	console := runDevices(t, cfg)
	wantLines(t, console, "VDA=FIRST-DISK", "VDB=READONLY", "SHARE=from-host", "GOT=ping-42")
	if b, err := os.ReadFile(filepath.Join(share, "back")); err != nil || string(b) != "from-guest\n" {
		t.Errorf("file the guest wrote to the share = %q, %v", b, err)
	}
}
