package cloudhypervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeEnv selects fake cloud-hypervisor mode when the test binary is run
// as the VMM (see TestMain).
const fakeEnv = "INITOS_FAKE_CLOUD_HYPERVISOR"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeCloudHypervisor(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeCloudHypervisor stands in for the real binary, which needs KVM: it
// takes the same arguments, writes the serial file, serves the REST API
// (logging each request to stdout) and a hybrid vsock socket whose agent
// echoes. Modes: "serve"; "fail" (exit 1 at once); "stubborn" (vmm.shutdown
// fails and SIGTERM is ignored); "poweroff" (exit 0 after 300ms).
func fakeCloudHypervisor(mode string, args []string) int {
	opt := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "--") {
			opt[args[i]] = args[i+1]
		}
	}
	value := func(flag, key string) string {
		for _, kv := range strings.Split(opt[flag], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v
			}
		}
		return ""
	}
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "Error parsing --disk: fake refuses")
		return 1
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	if err := os.WriteFile(value("--serial", "file"), []byte("fake guest booted\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	api, err := net.Listen("unix", value("--api-socket", "path"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vsock, err := net.Listen("unix", value("--vsock", "socket"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exit := make(chan int, 1)
	go http.Serve(api, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s\n", r.Method, r.URL.Path)
		switch r.URL.Path {
		case "/api/v1/vmm.ping":
			w.Write([]byte(`{"version":"fake"}`))
		case "/api/v1/vmm.shutdown":
			if mode == "stubborn" {
				http.Error(w, "no", http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			exit <- 0
		case "/api/v1/vm.shutdown", "/api/v1/vm.pause", "/api/v1/vm.resume":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	go func() {
		for {
			c, err := vsock.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				if line, err := r.ReadString('\n'); err != nil || line != fmt.Sprintf("CONNECT %d\n", AgentPort) {
					return
				}
				c.Write([]byte("OK 1073741824\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	if mode == "poweroff" {
		go func() { time.Sleep(300 * time.Millisecond); exit <- 0 }()
	}
	code := <-exit
	time.Sleep(50 * time.Millisecond) // let the reply out
	api.Close()
	vsock.Close()
	return code
}

var kvm = &vmm.Accel{Name: vmm.AccelKVM, Reason: "test"}

func fakeVM(t *testing.T, mode string, opts Options) (*VM, vmm.Config) {
	t.Helper()
	t.Setenv(fakeEnv, mode)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	disk := filepath.Join(dir, "root.img")
	for _, f := range []string{kernel, disk} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := vmm.Config{ID: "t", Kernel: kernel, MemoryMiB: 128, CPUs: 1, Disks: []vmm.Disk{{Path: disk}},
		StateDir: filepath.Join(dir, "state"), ConsoleLog: filepath.Join(dir, "console.log")}
	opts.Binary = os.Args[0]
	opts.Accel = kvm
	v, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v, cfg
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
		t.Errorf("pid %d still exists (%v)", pid, err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := vmm.Config{ID: "t", Kernel: kernel, MemoryMiB: 128, CPUs: 1, StateDir: filepath.Join(dir, "s"), ConsoleLog: filepath.Join(dir, "c.log")}
	tcg := &vmm.Accel{Name: vmm.AccelTCG, Reason: "no usable KVM for a stock kernel: /dev/kvm is PVM"}

	if _, err := New(cfg, Options{Binary: "/bin/true", Accel: tcg}); !errors.Is(err, vmm.ErrNoKVM) || !strings.Contains(err.Error(), "PVM") {
		t.Errorf("New without KVM = %v, want ErrNoKVM with the reason", err)
	}
	if _, err := New(cfg, Options{Binary: "/nonexistent/cloud-hypervisor", Accel: kvm}); err == nil || !strings.Contains(err.Error(), "finding cloud-hypervisor") {
		t.Errorf("New(missing binary) = %v", err)
	}
	p9 := cfg
	p9.Shares = []vmm.Share{{Dir: dir, Tag: "z", Mode: vmm.Share9p}}
	if _, err := New(p9, Options{Binary: "/bin/true", Accel: kvm}); !errors.Is(err, vmm.ErrInvalidConfig) {
		t.Errorf("New(9p share) = %v, want ErrInvalidConfig", err)
	}
	vfs := cfg
	vfs.Shares = []vmm.Share{{Dir: dir, Tag: "z", Mode: vmm.ShareVirtiofs}}
	if _, err := New(vfs, Options{Binary: "/bin/true", Virtiofsd: "/nonexistent/virtiofsd", Accel: kvm}); !errors.Is(err, vmm.ErrNoVirtiofsd) {
		t.Errorf("New(virtiofs without virtiofsd) = %v, want ErrNoVirtiofsd", err)
	}
	v, err := New(cfg, Options{Binary: "/bin/true", Accel: kvm})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.DialAgent(ctx); !errors.Is(err, vmm.ErrNotStarted) {
		t.Errorf("DialAgent before Start = %v", err)
	}
	if err := v.Resume(ctx); !errors.Is(err, vmm.ErrNotStarted) {
		t.Errorf("Resume before Start = %v", err)
	}
	if err := v.Stop(ctx); err != nil || v.Pid() != 0 {
		t.Errorf("Stop before Start = %v, Pid %d", err, v.Pid())
	}
}

// TestLifecycle runs the driver against the fake: Start waits for the API,
// DialAgent does the hybrid vsock handshake, Pause/Resume/Stop use the
// REST API in order, and nothing is left behind.
func TestLifecycle(t *testing.T) {
	v, cfg := fakeVM(t, "serve", Options{})
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := v.Pid()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := v.DialAgent(dctx)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping\n"))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "ping\n" {
		t.Errorf("echo through the agent connection = %q, %v", got, err)
	}
	c.Close()
	if err := v.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Wait(); err != nil {
		t.Errorf("Wait after Stop = %v", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	assertClean(t, v, pid)
	log, _ := os.ReadFile(cfg.SocketPath(chLog))
	want := "PUT /api/v1/vm.pause\nPUT /api/v1/vm.resume\nPUT /api/v1/vm.shutdown\nPUT /api/v1/vmm.shutdown\n"
	if !strings.Contains(string(log), "GET /api/v1/vmm.ping\n") || !strings.HasSuffix(string(log), want) {
		t.Errorf("API requests:\n%s\nwant ping first and to end with:\n%s", log, want)
	}
}

func TestStartFailure(t *testing.T) {
	v, _ := fakeVM(t, "fail", Options{})
	err := v.Start(context.Background())
	if !errors.Is(err, vmm.ErrVMExited) || !strings.Contains(err.Error(), "Error parsing --disk: fake refuses") {
		t.Fatalf("Start = %v, want ErrVMExited with the VMM's message", err)
	}
	if v.Pid() != 0 {
		t.Errorf("Pid after failed Start = %d", v.Pid())
	}
	for _, s := range sockets(v) {
		if _, err := os.Lstat(s); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind", s)
		}
	}
}

// TestStopKills: a VMM that refuses vmm.shutdown and ignores SIGTERM is
// SIGKILLed after StopTimeout.
func TestStopKills(t *testing.T) {
	v, _ := fakeVM(t, "stubborn", Options{StopTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := v.Pid()
	t0 := time.Now()
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Stop took %s, want just over the 300ms StopTimeout", d)
	}
	if err := v.Wait(); err != nil {
		t.Errorf("Wait after Stop = %v", err)
	}
	assertClean(t, v, pid)
}

// TestGuestPowerOff: the VMM exits by itself; Wait is nil, DialAgent
// reports the exit with the console.
func TestGuestPowerOff(t *testing.T) {
	v, _ := fakeVM(t, "poweroff", Options{})
	ctx := context.Background()
	if err := v.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := v.Pid()
	if err := v.Wait(); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := v.DialAgent(dctx); !errors.Is(err, vmm.ErrVMExited) || !strings.Contains(err.Error(), "fake guest booted") {
		t.Errorf("DialAgent after exit = %v, want ErrVMExited with the console tail", err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertClean(t, v, pid)
}
