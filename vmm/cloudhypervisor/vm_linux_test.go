package cloudhypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
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
// (logging each request, with its body, to stdout) and a hybrid vsock
// socket whose agent echoes. With --restore it reads the snapshot's
// directory as cloud-hypervisor would and logs what it found; vm.snapshot
// writes one. Modes: "serve"; "fail" (exit 1 at once); "stubborn"
// (vmm.shutdown fails and SIGTERM is ignored); "poweroff" (exit 0 after
// 300ms); "refuse-snapshot" (vm.snapshot fails); "partial-snapshot"
// (vm.snapshot succeeds without writing state.json); "refuse-net" (vm.add-net
// fails); "mute" (the API never answers). Called with virtiofsd's
// arguments it is virtiofsd (fakeVirtiofsd).
func fakeCloudHypervisor(mode string, args []string) int {
	if len(args) > 0 && (args[0] == "--help" || strings.HasPrefix(args[0], "--socket-path=")) {
		return fakeVirtiofsd(args)
	}
	fmt.Printf("pid %d\n", os.Getpid())
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
	serialFile, vsockPath, state := value("--serial", "file"), value("--vsock", "socket"), "Running"
	if src, ok := strings.CutPrefix(value("--restore", "source_url"), "file://"); ok {
		fmt.Printf("restore %s\n", opt["--restore"])
		var err error
		if serialFile, vsockPath, err = fakeRestore(src); err != nil {
			fmt.Fprintln(os.Stderr, "Error restoring VM:", err)
			return 1
		}
		state = "Paused"
	}
	if err := os.WriteFile(serialFile, []byte("fake guest booted\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	api, err := net.Listen("unix", value("--api-socket", "path"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	vsock, err := net.Listen("unix", vsockPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	exit := make(chan int, 1)
	var mu sync.Mutex // guards state
	go http.Serve(api, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) > 0 {
			fmt.Printf("%s %s %s\n", r.Method, r.URL.Path, body)
		} else {
			fmt.Printf("%s %s\n", r.Method, r.URL.Path)
		}
		if mode == "mute" {
			<-r.Context().Done()
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/api/v1/vmm.ping":
			w.Write([]byte(`{"version":"fake"}`))
		case "/api/v1/vm.info":
			fmt.Fprintf(w, `{"config":{},"state":%q}`, state)
		case "/api/v1/vmm.shutdown":
			if mode == "stubborn" {
				http.Error(w, "no", http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			exit <- 0
		case "/api/v1/vm.pause", "/api/v1/vm.resume":
			state = map[string]string{"/api/v1/vm.pause": "Paused", "/api/v1/vm.resume": "Running"}[r.URL.Path]
			w.WriteHeader(http.StatusNoContent)
		case "/api/v1/vm.shutdown":
			w.WriteHeader(http.StatusNoContent)
		case "/api/v1/vm.snapshot":
			if err := fakeSnapshot(mode, state, body, serialFile, vsockPath); err != nil {
				http.Error(w, "Error from API: The VM could not be snapshotted: "+err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case "/api/v1/vm.add-disk", "/api/v1/vm.add-fs", "/api/v1/vm.add-net":
			if mode == "refuse-net" && r.URL.Path == "/api/v1/vm.add-net" {
				http.Error(w, "Error from API: The new network device could not be added to the VM: tap not found", http.StatusInternalServerError)
				return
			}
			w.Write([]byte(`{"id":"x","bdf":"0000:00:06.0"}`))
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

// fakeSnapshot is the fake's vm.snapshot: the VM must be paused, and the
// destination an existing directory, where it writes the three files.
// Its config.json has the VM's serial file and vsock socket, and no
// disk, share or NIC (a template's).
func fakeSnapshot(mode, state string, body []byte, serialFile, vsockPath string) error {
	if mode == "refuse-snapshot" {
		return errors.New("fake refuses")
	}
	if state != "Paused" {
		return fmt.Errorf("the vm is %s", state)
	}
	var req struct {
		URL string `json:"destination_url"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return err
	}
	dir, ok := strings.CutPrefix(req.URL, "file://")
	if !ok {
		return fmt.Errorf("not a file url: %q", req.URL)
	}
	for name, content := range fakeSnapshotFiles(serialFile, vsockPath) {
		if mode == "partial-snapshot" && name == snapState {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// fakeSnapshotFiles are the files of a fake snapshot, by their names in a
// snapshot's directory.
func fakeSnapshotFiles(serialFile, vsockPath string) map[string]string {
	config := fmt.Sprintf(`{"cpus":{"boot_vcpus":1},"disks":null,"fs":null,"net":null,`+
		`"serial":{"file":%q,"mode":"File"},"vsock":{"cid":3,"socket":%q,"id":"_vsock0"}}`, serialFile, vsockPath)
	return map[string]string{snapConfig: config, snapMemory: "fake RAM", snapState: "fake state"}
}

// fakeRestore reads the snapshot in dir as --restore does, logs what it
// read, and returns the serial file and vsock socket of its config.
func fakeRestore(dir string) (serialFile, vsockPath string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, snapConfig))
	if err != nil {
		return "", "", err
	}
	var c struct {
		Serial struct{ File string }   `json:"serial"`
		Vsock  struct{ Socket string } `json:"vsock"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", "", err
	}
	st, err := os.ReadFile(filepath.Join(dir, snapState))
	if err != nil {
		return "", "", err
	}
	ram, err := os.ReadFile(filepath.Join(dir, snapMemory))
	if err != nil {
		return "", "", err
	}
	fmt.Printf("restored serial=%s vsock=%s state=%q memory=%q\n", c.Serial.File, c.Vsock.Socket, st, ram)
	return c.Serial.File, c.Vsock.Socket, nil
}

// fakeVirtiofsd is virtiofsd to the Supervisor: its --help names
// --shared-dir (the Rust dialect), and it serves --socket-path (logging
// its pid) until killed.
func fakeVirtiofsd(args []string) int {
	if args[0] == "--help" {
		fmt.Println("--shared-dir=DIR")
		return 0
	}
	fmt.Printf("pid %d\n", os.Getpid())
	l, err := net.Listen("unix", strings.TrimPrefix(args[0], "--socket-path="))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		defer c.Close()
	}
}

var kvm = &vmm.Accel{Name: vmm.AccelKVM, Reason: "test"}

func fakeVM(t *testing.T, mode string, opts Options) (*VM, vmm.Config) {
	t.Helper()
	return fakeVMWith(t, mode, opts, func(*vmm.Config) {})
}

// fakeVMWith is fakeVM with its config changed by mutate before New.
func fakeVMWith(t *testing.T, mode string, opts Options, mutate func(*vmm.Config)) (*VM, vmm.Config) {
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
	mutate(&cfg)
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
