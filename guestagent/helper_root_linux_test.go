package guestagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// busyboxRootfs makes a root filesystem of a static busybox and its applets.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox: ", err)
	}
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "cat", "id", "pwd", "echo", "sleep", "stty", "true", "readlink", "hostname"} {
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "notadir"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Executable bits but no format execve knows: fails only at the exec.
	if err := os.WriteFile(filepath.Join(bin, "badformat"), []byte("\x00\x01garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// rootService is a Service with the real launcher and system, its rootfs a
// busybox directory (no Setup: nothing is mounted).
func rootService(t *testing.T) *Service {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the helper chroots and changes uid")
	}
	root := busyboxRootfs(t)
	r := newReaper()
	r.Run()
	t.Cleanup(r.Stop)
	cfg := defaultServiceConfig()
	cfg.Rootfs = root
	s := newService(cfg, osSystem{}, newHelperLauncher(r, "/proc/self/exe"), newLogger(io.Discard, false))
	s.state = guestSetUp
	s.containers[""] = &guestContainer{rootfs: root}
	return s
}

func run(t *testing.T, s *Service, id string, p specs.Process, stdin string) (stdout, stderr string, status int32) {
	t.Helper()
	return runIn(t, s, "", id, p, stdin)
}

// runIn is run in container (a pod member's id, or "" for the VM's own).
func runIn(t *testing.T, s *Service, container, id string, p specs.Process, stdin string) (stdout, stderr string, status int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: id, ContainerId: container, ProcessJson: processJSON(t, p)}); err != nil {
		t.Fatalf("CreateProcess: %v", err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: id}); err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	if stdin != "" {
		if _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{Id: id, Data: []byte(stdin)}); err != nil {
			t.Fatalf("WriteStdin: %v", err)
		}
	}
	if !p.Terminal {
		if _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{Id: id}); err != nil {
			t.Fatalf("CloseStdin: %v", err)
		}
	}
	stdout = readAllStream(t, s.ReadStdout, id)
	stderr = readAllStream(t, s.ReadStderr, id)
	w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: id})
	if err != nil {
		t.Fatalf("WaitProcess: %v", err)
	}
	return stdout, stderr, w.ExitStatus
}

func TestHelperRunsProcess(t *testing.T) {
	s := rootService(t)
	umask := uint32(0o077)
	p := specs.Process{
		Args:    []string{"sh", "-c", `echo err >&2; pwd; id -u; id -g; id -G; echo "$FOO"; ulimit -n; ulimit -Hn; umask; cat; exit 7`},
		Env:     []string{"PATH=/bin", "FOO=bar baz"},
		Cwd:     "/work/dir", // missing: created, as runc does
		User:    specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 20}, Umask: &umask},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 123, Hard: 456}},
	}
	stdout, stderr, status := run(t, s, "main", p, "from stdin\n")
	want := "/work/dir\n1000\n1001\n1001 10 20\nbar baz\n123\n456\n0077\nfrom stdin\n"
	if stdout != want {
		t.Errorf("stdout\n got %q\nwant %q", stdout, want)
	}
	if stderr != "err\n" {
		t.Errorf("stderr %q", stderr)
	}
	if status != 7 {
		t.Errorf("status %d, want 7", status)
	}
}

func TestHelperErrors(t *testing.T) {
	s := rootService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tests := []struct {
		name string
		p    specs.Process
		kind error
		text string
	}{
		{"not in PATH", specs.Process{Args: []string{"nope"}, Env: []string{"PATH=/bin:/usr/bin"}, Cwd: "/"},
			ErrNotFound, `exec: "nope": executable file not found in $PATH`},
		{"no PATH at all", specs.Process{Args: []string{"sh"}, Cwd: "/"}, ErrNotFound, `exec: "sh": executable file not found in $PATH`},
		{"missing path", specs.Process{Args: []string{"/bin/nope"}, Cwd: "/"}, nil, `"/bin/nope"`},
		{"not executable", specs.Process{Args: []string{"/bin/noexec"}, Cwd: "/"}, nil, "permission denied"},
		{"cwd is a file", specs.Process{Args: []string{"/bin/true"}, Cwd: "/notadir"}, nil, `cwd "/notadir"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "e" + string(rune('0'+i))
			_, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: id, ProcessJson: processJSON(t, tt.p)})
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.text) || (tt.kind != nil && !errors.Is(err, tt.kind)) {
				t.Errorf("CreateProcess = %v, want an error with %q", err, tt.text)
			}
			if _, err := s.lookup("test", id); !errors.Is(err, ErrNotFound) {
				t.Errorf("a failed process stays registered: %v", err)
			}
		})
	}
}

func TestHelperSignalAndTerminal(t *testing.T) {
	s := rootService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	p := specs.Process{Args: []string{"sleep", "30"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "sleeper", ProcessJson: processJSON(t, p)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "sleeper"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "sleeper", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "sleeper"})
	if err != nil || w.ExitStatus != 137 {
		t.Fatalf("WaitProcess = %v, %v; want 137", w, err)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "sleeper", Signal: 9}); err == nil || err.Error() != `process "sleeper" has exited` {
		t.Errorf("signalling again = %v", err)
	}

	tp := specs.Process{
		Terminal:    true,
		ConsoleSize: &specs.Box{Height: 30, Width: 100},
		Args:        []string{"sh", "-c", `stty size; read x; echo "got:$x"; exit 5`},
		Env:         []string{"PATH=/bin"},
		Cwd:         "/",
	}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "tty", ProcessJson: processJSON(t, tp)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "tty"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{Id: "tty", Data: []byte("hello\n")}); err != nil {
		t.Fatal(err)
	}
	out := readAllStream(t, s.ReadStdout, "tty")
	if !strings.Contains(out, "30 100\r\n") || !strings.Contains(out, "got:hello\r\n") {
		t.Errorf("terminal output %q: want the console size and the echoed line", out)
	}
	if w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "tty"}); err != nil || w.ExitStatus != 5 {
		t.Errorf("WaitProcess = %v, %v; want 5", w, err)
	}
}

func TestHelperExecFailsAfterStart(t *testing.T) {
	s := rootService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := specs.Process{Args: []string{"badformat"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "bad", ProcessJson: processJSON(t, p)}); err != nil {
		t.Fatalf("CreateProcess: %v", err)
	}
	_, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "bad"})
	if err == nil || !strings.Contains(err.Error(), "exec format error") || !strings.Contains(err.Error(), "/bin/badformat") {
		t.Fatalf("StartProcess = %v, want the exec error", err)
	}
	w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "bad"})
	if err != nil || w.ExitStatus != 127 {
		t.Errorf("WaitProcess = %v, %v; want 127", w, err)
	}
	// Killed before it started: StartProcess says so.
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "early", ProcessJson: processJSON(t,
		specs.Process{Args: []string{"true"}, Env: []string{"PATH=/bin"}, Cwd: "/"})}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "early", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "early"}); err != nil || w.ExitStatus != 137 {
		t.Errorf("WaitProcess = %v, %v; want 137", w, err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "early"}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("starting a killed process = %v", err)
	}
}

// TestHelperPodMemberPidns: a pod member's first process is PID 1 of a
// new PID namespace with its own /proc; the next one joins it.
func TestHelperPodMemberPidns(t *testing.T) {
	s := rootService(t)
	root := s.containers[""].rootfs
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(filepath.Join(root, "proc"), unix.MNT_DETACH) == nil {
		}
	})
	s.containers["m1"] = &guestContainer{id: "m1", rootfs: root, ownPidns: true, masked: []string{"/proc/timer_list"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sleeper := specs.Process{Args: []string{"sleep", "30"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "m1-main", ContainerId: "m1", ProcessJson: processJSON(t, sleeper)}); err != nil {
		t.Fatalf("CreateProcess: %v", err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "m1-main"}); err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	p := specs.Process{Args: []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$; x=$(cat /proc/timer_list); echo ${#x}"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	buf := &bytes.Buffer{}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "m1-exec", ContainerId: "m1", ProcessJson: processJSON(t, p)}); err != nil {
		t.Fatalf("CreateProcess in the member: %v", err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "m1-exec"}); err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	buf.WriteString(readAllStream(t, s.ReadStdout, "m1-exec"))
	if e := readAllStream(t, s.ReadStderr, "m1-exec"); e != "" {
		t.Logf("stderr: %s", e)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || strings.TrimSpace(lines[0]) != "sleep 30" || lines[1] == "1" || strings.TrimSpace(lines[2]) != "0" {
		t.Errorf("the exec saw %q, want PID 1 to be \"sleep 30\", itself another pid and /proc/timer_list masked (empty)", buf.String())
	}
	procs, err := s.ListProcesses(ctx, &agentapi.ListProcessesRequest{ContainerId: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(procs.Processes) == 0 {
		t.Error("ListProcesses of m1 is empty")
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "m1-main", Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "m1-main"}); err != nil || w.ExitStatus != 137 {
		t.Errorf("WaitProcess = %v, %v; want 137", w, err)
	}
}

// TestHelperKeepsProcMounts: a spec's mount under /proc (lxcfs's
// /proc/meminfo, say), made by Setup on the spec's proc, is on the /proc
// the container's first process mounts for its PID namespace, as runc
// mounts it on the container's one /proc.
func TestHelperKeepsProcMounts(t *testing.T) {
	s := rootService(t)
	root := s.containers[""].rootfs
	proc := filepath.Join(root, "proc")
	if err := os.MkdirAll(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(proc, unix.MNT_DETACH) == nil {
		}
	})
	// What Setup makes: the spec's proc, then the bind on it.
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(fake, []byte("MemTotal: 42 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(fake, filepath.Join(proc, "meminfo"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	s.containers["m3"] = &guestContainer{id: "m3", rootfs: root, ownPidns: true,
		mounted: []string{root, proc, filepath.Join(proc, "meminfo")}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := specs.Process{Args: []string{"sh", "-c", "echo $$; cat /proc/meminfo"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
	if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "m3-main", ContainerId: "m3", ProcessJson: processJSON(t, p)}); err != nil {
		t.Fatalf("CreateProcess: %v", err)
	}
	if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "m3-main"}); err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	out := readAllStream(t, s.ReadStdout, "m3-main")
	if e := readAllStream(t, s.ReadStderr, "m3-main"); e != "" {
		t.Logf("stderr: %s", e)
	}
	if want := "1\nMemTotal: 42 kB\n"; out != want {
		t.Errorf("the process printed %q, want %q: PID 1 of its namespace, with the bind on its /proc/meminfo", out, want)
	}
	if w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "m3-main"}); err != nil || w.ExitStatus != 0 {
		t.Errorf("WaitProcess = %v, %v", w, err)
	}
}

// TestHelperPodSharedPidns: a pod member that joins the default
// container's PID namespace (CRI shareProcessNamespace) sees the sandbox's
// process as PID 1 and its own processes beside it, its execs join it, and
// the end of the sandbox's process ends them. (Without a mount namespace
// here: the default container's /proc, which its PID 1 mounted, is that
// namespace's; the member's own proc mount is the guest's business.)
func TestHelperPodSharedPidns(t *testing.T) {
	s := rootService(t)
	s.containers[""].ownPidns = true
	root := s.containers[""].rootfs
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(filepath.Join(root, "proc"), unix.MNT_DETACH) == nil {
		}
	})
	s.containers["m2"] = &guestContainer{id: "m2", rootfs: root, joinNs: []string{"pid"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func(cid, id string, p specs.Process) {
		t.Helper()
		if _, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: id, ContainerId: cid, ProcessJson: processJSON(t, p)}); err != nil {
			t.Fatalf("CreateProcess %s: %v", id, err)
		}
		if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: id}); err != nil {
			t.Fatalf("StartProcess %s: %v", id, err)
		}
	}
	start("", "pause", specs.Process{Args: []string{"sleep", "30"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	start("m2", "m2-main", specs.Process{Args: []string{"sleep", "31"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	s.mu.Lock()
	pausePidns, memberPidns := s.containers[""].pidns, s.containers["m2"].pidns
	s.mu.Unlock()
	if memberPidns == "" || memberPidns != pausePidns {
		t.Errorf("the member's PID namespace %q, want the sandbox's %q", memberPidns, pausePidns)
	}
	stdout, stderr, status := runIn(t, s, "m2", "m2-exec", specs.Process{
		Args: []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/[0-9]*/cmdline | tr '\\0' ' '"}, Env: []string{"PATH=/bin"}, Cwd: "/"}, "")
	lines := strings.SplitN(stdout, "\n", 2)
	if status != 0 || len(lines) != 2 || strings.TrimSpace(lines[0]) != "sleep 30" || !strings.Contains(lines[1], "sleep 31") {
		t.Errorf("the member's exec: status %d, stdout %q, stderr %q; want PID 1 \"sleep 30\" (the sandbox's) and its own \"sleep 31\" listed", status, stdout, stderr)
	}
	// The sandbox's process ends: the kernel ends the namespace, the
	// member's processes with it.
	if _, err := s.SignalProcess(ctx, &agentapi.SignalRequest{Id: "pause", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "m2-main"}); err != nil || w.ExitStatus != 137 {
		t.Errorf("the member's process after the sandbox's end: %v, %v; want 137", w, err)
	}
}

// TestHelperCapabilities: the helper gives the process the spec's
// capability sets, no_new_privs and oom_score_adj, as runc does.
func TestHelperCapabilities(t *testing.T) {
	s := rootService(t)
	proc := filepath.Join(s.containers[""].rootfs, "proc")
	if err := os.Mkdir(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Fatalf("mounting proc in the rootfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(proc, unix.MNT_DETACH) })
	if err := os.Symlink("busybox", filepath.Join(s.containers[""].rootfs, "bin", "grep")); err != nil {
		t.Fatal(err)
	}
	// The pod members' root: each member's helper mounts the proc of its
	// PID namespace on its proc, which outlives the namespace.
	memberRoot := busyboxRootfs(t)
	if err := os.Mkdir(filepath.Join(memberRoot, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for unix.Unmount(filepath.Join(memberRoot, "proc"), unix.MNT_DETACH) == nil {
		}
	})
	if err := os.Symlink("busybox", filepath.Join(memberRoot, "bin", "grep")); err != nil {
		t.Fatal(err)
	}
	// What this test runs with (a container may lack some capabilities).
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	held := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	var heldNames []string
	for n, b := range procinit.CapabilityBits {
		if held&(1<<uint(b)) != 0 {
			heldNames = append(heldNames, n)
		}
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	var oom int
	if _, err := fmt.Sscan(string(b), &oom); err != nil {
		t.Fatal(err)
	}
	adj := 500
	script := `grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status; cat /proc/self/oom_score_adj`
	status := func(inh, prm, eff, bnd, amb uint64, nnp, oom int) string {
		return fmt.Sprintf("CapInh:\t%016x\nCapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t%016x\nNoNewPrivs:\t%d\n%d\n",
			uint64(inh), uint64(prm), uint64(eff), uint64(bnd), uint64(amb), nnp, oom)
	}
	netAdmin := []string{"CAP_NET_ADMIN"}
	for i, tc := range []struct {
		name string
		p    specs.Process
		want string
	}{
		{"absent capabilities are none", specs.Process{}, status(0, 0, 0, 0, 0, 0, oom)},
		{"root with one capability, no_new_privs, oom_score_adj", specs.Process{
			Capabilities:    &specs.LinuxCapabilities{Bounding: netAdmin, Effective: netAdmin, Permitted: netAdmin},
			NoNewPrivileges: true, OOMScoreAdj: &adj,
		}, status(0, 1<<12, 1<<12, 1<<12, 0, 1, 500)},
		{"non-root keeps only ambient", specs.Process{
			User: specs.User{UID: 1000, GID: 1000},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:    []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_UNKNOWN"},
				Effective:   []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"},
				Permitted:   []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"},
				Inheritable: []string{"CAP_NET_BIND_SERVICE"},
				Ambient:     []string{"CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"},
			},
		}, status(1<<10, 1<<10, 1<<10, 1<<5|1<<10|1<<12, 1<<10, 0, oom)},
		{"every capability held", specs.Process{Capabilities: &specs.LinuxCapabilities{
			Bounding: heldNames, Effective: heldNames, Permitted: heldNames,
		}}, status(0, held, held, held, 0, 0, oom)},
	} {
		p := tc.p
		p.Args, p.Env, p.Cwd = []string{"sh", "-c", script}, []string{"PATH=/bin"}, "/"
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, s, fmt.Sprintf("caps-%d", i), p, "")
			if code != 0 || stdout != tc.want {
				t.Errorf("exit %d, stderr %q, stdout\n%s\nwant\n%s", code, stderr, stdout, tc.want)
			}
		})
		// A pod member's first process: PID 1 of a new PID namespace.
		t.Run(tc.name+" in a pod member", func(t *testing.T) {
			member := fmt.Sprintf("member-%d", i)
			s.containers[member] = &guestContainer{id: member, rootfs: memberRoot, ownPidns: true}
			stdout, stderr, code := runIn(t, s, member, member+"-caps", p, "")
			if code != 0 || stdout != tc.want {
				t.Errorf("exit %d, stderr %q, stdout\n%s\nwant\n%s", code, stderr, stdout, tc.want)
			}
		})
	}
}
