package vmm

import (
	"context"
	"errors"
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

func TestWaitForSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	p, err := StartProcess("sleep", "/bin/sleep", []string{"60"}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	go func() {
		time.Sleep(50 * time.Millisecond)
		if l, err := net.Listen("unix", sock); err == nil {
			t.Cleanup(func() { l.Close() })
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := WaitForSocket(ctx, sock, p); err != nil {
		t.Fatalf("WaitForSocket: %v", err)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := WaitForSocket(short, filepath.Join(dir, "never.sock"), p); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForSocket(never) = %v, want deadline", err)
	}

	dead, err := StartProcess("false", "/bin/sh", []string{"-c", "echo cannot bind; exit 1"}, filepath.Join(dir, "dead.log"))
	if err != nil {
		t.Fatal(err)
	}
	err = WaitForSocket(ctx, filepath.Join(dir, "never.sock"), dead)
	if err == nil || !strings.Contains(err.Error(), "cannot bind") {
		t.Errorf("WaitForSocket(dead process) = %v, want its log in the error", err)
	}
}

// TestStartVirtiofsd runs the real virtiofsd on a directory whose name has
// a comma, which the C virtiofsd only finds when it is escaped.
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
	p, err := StartVirtiofsd(ctx, bin, flavor, sock, Share{Dir: share, Cache: CacheAuto, Xattr: true}, filepath.Join(dir, "virtiofsd.log"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a bad source= makes it exit right after binding
	if p.Exited() {
		t.Fatalf("virtiofsd exited: %v", p.ExitError())
	}
	if err := p.Terminate(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := RemoveSockets(sock); err != nil {
		t.Fatal(err)
	}

	_, err = StartVirtiofsd(ctx, bin, flavor, sock, Share{Dir: filepath.Join(dir, "missing")}, filepath.Join(dir, "virtiofsd2.log"))
	if err == nil {
		t.Fatal("StartVirtiofsd on a missing dir succeeded")
	}
	if _, serr := os.Lstat(sock); !os.IsNotExist(serr) {
		t.Errorf("socket left behind after a failed start: %v", serr)
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
