package vmm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartProcessExitAndLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "p.log")
	p, err := StartProcess("sh", "/bin/sh", []string{"-c", "echo out; echo err >&2; exit 3"}, log)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	if got := p.LogTail(2); got != "out\nerr" {
		t.Errorf("LogTail = %q", got)
	}
	msg := p.ExitError().Error()
	for _, w := range []string{"sh (pid ", "exit status 3", "out\nerr"} {
		if !strings.Contains(msg, w) {
			t.Errorf("ExitError %q does not contain %q", msg, w)
		}
	}
	if _, err := StartProcess("x", "/nonexistent/binary", nil, filepath.Join(dir, "x.log")); err == nil {
		t.Error("StartProcess of a missing binary succeeded")
	}
}

func TestProcessOwnGroupAndKill(t *testing.T) {
	// The shell's background child is in the same group and must die too.
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	p, err := StartProcess("sh", "/bin/sh", []string{"-c", "sleep 60 & echo $! > " + pidFile + "; wait"}, filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	if pgid, err := syscall.Getpgid(p.Pid()); err != nil || pgid != p.Pid() {
		t.Fatalf("pgid of %d = %d, %v; want its own group", p.Pid(), pgid, err)
	}
	child := waitPidFile(t, pidFile)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Terminate(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("process still running after Terminate")
	}
	waitGone(t, child)
	if err := p.Kill(); err != nil {
		t.Errorf("Kill after exit: %v", err)
	}
}

// TestPdeathsig re-executes the test binary as a parent that starts
// `sleep` with StartProcess; killing that parent must kill the sleep.
func TestPdeathsig(t *testing.T) {
	if pidFile := os.Getenv("VMM_TEST_PDEATHSIG"); pidFile != "" {
		p, err := StartProcess("sleep", "/bin/sleep", []string{"60"}, pidFile+".log")
		if err != nil {
			os.Exit(2)
		}
		_ = os.WriteFile(pidFile+".tmp", []byte(strconv.Itoa(p.Pid())), 0o644)
		_ = os.Rename(pidFile+".tmp", pidFile)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	parent := exec.Command(os.Args[0], "-test.run=^TestPdeathsig$")
	parent.Env = append(os.Environ(), "VMM_TEST_PDEATHSIG="+pidFile)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	child := waitPidFile(t, pidFile)
	_ = parent.Process.Kill()
	_ = parent.Wait()
	waitGone(t, child)
}

func waitPidFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// waitGone waits until pid no longer runs (zombies count as gone: the
// pid's parent may be the test binary's reaper-less process).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d still runs", pid)
}

func TestClaimSocket(t *testing.T) {
	dir := t.TempDir()
	if err := ClaimSocket(filepath.Join(dir, "none.sock")); err != nil {
		t.Errorf("ClaimSocket(missing) = %v", err)
	}

	live := filepath.Join(dir, "live.sock")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := ClaimSocket(live); !errors.Is(err, ErrStateDirInUse) {
		t.Errorf("ClaimSocket(live) = %v, want ErrStateDirInUse", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	if err := ClaimSocket(stale); err != nil {
		t.Errorf("ClaimSocket(stale) = %v", err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale socket still there: %v", err)
	}

	file := writeFile(t, filepath.Join(dir, "file"), "x")
	if err := ClaimSocket(file); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("ClaimSocket(file) = %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("regular file removed: %v", err)
	}
}

// TestStartVirtiofsd runs the real virtiofsd on a directory whose name has
// a comma, which the C virtiofsd only finds when it is escaped, on the
// socket StartVirtiofsd made and handed it: a client that connects at once
// (as the VMM does, before virtiofsd accepts) gets the answer of a
// vhost-user backend.
func TestStartVirtiofsd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: virtiofsd sandboxes itself in namespaces")
	}
	bin, err := FindVirtiofsd("")
	if err != nil {
		t.Skipf("no virtiofsd: %v", err)
	}
	dir := t.TempDir()
	share := filepath.Join(dir, "a,b")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "v.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	flavor, err := VirtiofsdFlavorOfBinary(ctx, bin, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartVirtiofsd(bin, flavor, sock, Share{Tag: "t", Dir: share, Cache: CacheAuto, Xattr: true}, filepath.Join(dir, "virtiofsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("connecting to the handed socket: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// VHOST_USER_GET_FEATURES (1), version 1, no payload; the reply has
	// the reply flag (4) and the 8-byte feature mask.
	msg := make([]byte, 12)
	binary.LittleEndian.PutUint32(msg[0:], 1)
	binary.LittleEndian.PutUint32(msg[4:], 1)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 20)
	if _, err := io.ReadFull(conn, reply); err != nil {
		t.Fatalf("virtiofsd's answer: %v (its log: %s)", err, p.LogTail(10))
	}
	if req, flags, size := binary.LittleEndian.Uint32(reply[0:]), binary.LittleEndian.Uint32(reply[4:]), binary.LittleEndian.Uint32(reply[8:]); req != 1 || flags&4 == 0 || size != 8 {
		t.Errorf("reply header: request %d, flags %#x, size %d", req, flags, size)
	}
	conn.Close()
	if err := p.Terminate(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := RemoveSockets(sock); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, dir, want string }{
		{"missing", filepath.Join(dir, "missing"), "no such file"},
		{"a file", filepath.Join(dir, "virtiofsd.log"), "not a directory"},
	} {
		_, err = StartVirtiofsd(bin, flavor, sock, Share{Tag: "t", Dir: tc.dir}, filepath.Join(dir, "virtiofsd2.log"))
		if err == nil || !strings.Contains(err.Error(), `share "t"`) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartVirtiofsd on %s: %v, want an error naming the share and %q", tc.name, err, tc.want)
		}
		if _, serr := os.Lstat(sock); !os.IsNotExist(serr) {
			t.Errorf("%s: socket left behind after a failed start: %v", tc.name, serr)
		}
	}
}

func TestListenSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "l.sock")
	f, err := ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	// Another process (here: this one, through the file) accepts.
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("closing the file and the listener removed the socket: %v", err)
	}
	if _, err := ListenSocket(sock); err == nil {
		t.Error("ListenSocket over an existing socket succeeded")
	}
}

func TestRestrictSockets(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RestrictSockets(sock, filepath.Join(dir, "missing.sock")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	if err := RestrictSockets(file); err == nil {
		t.Error("a regular file was taken for a socket")
	}
}

// readOOMScoreAdj is pid's /proc oom_score_adj.
func readOOMScoreAdj(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// raisedOOMScoreAdj is a value above this process's, which any process may
// give its children (only lowering needs CAP_SYS_RESOURCE).
func raisedOOMScoreAdj(t *testing.T) int {
	if own := readOOMScoreAdj(t, os.Getpid()); own < 500 {
		return 500
	} else if own < 1000 {
		return 1000
	}
	t.Skip("this process's oom_score_adj is 1000 already: none can be raised")
	return 0
}

// TestSetOOMScoreAdj: a process and the child it forked before the write
// get the value; a process that has gone is no error; a value the kernel
// refuses is, naming the process.
func TestSetOOMScoreAdj(t *testing.T) {
	adj := raisedOOMScoreAdj(t)
	dir := t.TempDir()
	p, err := StartProcess("sh", "/bin/sh", []string{"-c", "sleep 60 & wait"}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.Pid(), p.Pid()))
		if f := strings.Fields(string(b)); len(f) == 1 {
			child, _ = strconv.Atoi(f[0])
		} else if time.Now().After(deadline) {
			t.Fatalf("sh forked no child: %q", b)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := SetOOMScoreAdj(p.Pid(), adj); err != nil {
		t.Fatal(err)
	}
	for what, pid := range map[string]int{"sh": p.Pid(), "its child": child} {
		if got := readOOMScoreAdj(t, pid); got != adj {
			t.Errorf("%s (pid %d): oom_score_adj %d, want %d", what, pid, got, adj)
		}
	}
	if err := SetOOMScoreAdj(1<<30, adj); err != nil { // above any pid_max
		t.Errorf("a process that has gone: %v", err)
	}
	err = SetOOMScoreAdj(p.Pid(), 1001)
	if want := fmt.Sprintf("setting the oom_score_adj of pid %d to 1001: ", p.Pid()); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("an out-of-range value: error %v, want one starting %q", err, want)
	}
}
