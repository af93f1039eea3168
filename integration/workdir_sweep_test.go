package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNamesPath(t *testing.T) {
	const dir = "/tmp/initos-integration-1"
	for _, tc := range []struct {
		b    string
		want bool
	}{
		{"qemu\x00-kernel\x00/tmp/initos-integration-1/data/vmlinux\x00", true},
		{"containerd\x00--root\x00/tmp/initos-integration-1\x00", true},
		{"--root=/tmp/initos-integration-1", true},
		{"PATH=/tmp/initos-integration-1:/usr/bin\x00HOME=/root\x00", true},
		{"PATH=/usr/bin:/tmp/initos-integration-1\x00", true},
		{"sleep\x00/tmp/initos-integration-10/x\x00", false},
		{"/tmp/initos-integration-10\x00/tmp/initos-integration-1/x", true},
		{"sleep\x00600\x00", false},
		{"", false},
	} {
		if got := namesPath([]byte(tc.b), dir); got != tc.want {
			t.Errorf("namesPath(%q) = %v, want %v", tc.b, got, tc.want)
		}
	}
}

// TestSweepWorkDirs: a dead run's processes are killed, its mounts (as
// root) detached and its directory removed; a live run's, a directory
// another process works in and one with no owner file stay, and so do
// their processes.
func TestSweepWorkDirs(t *testing.T) {
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1)")
	}
	tmp := t.TempDir()
	deadPid := func() int {
		c := exec.Command("true")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		return c.Process.Pid
	}
	mkdir := func(name string, owner int) string {
		dir := filepath.Join(tmp, workDirPrefix+name)
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if owner > 0 {
			if err := os.WriteFile(filepath.Join(dir, workOwnerFile), []byte(strconv.Itoa(owner)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// start runs cmd and reaps it when it ends (a dead run's processes are
	// orphans the host's init reaps), reporting its end on the channel.
	start := func(cmd *exec.Cmd) <-chan error {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return done
	}
	// killed waits for the reaper: the sweep saw the process gone once
	// it was reaped, a moment before Wait returns.
	killed := func(name string, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("%s ended with %v, want killed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s still runs", name)
		}
	}
	running := func(name string, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Errorf("%s ended (%v), want it running", name, err)
		default:
		}
	}
	exists := func(dir string, want bool) {
		t.Helper()
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", dir, err == nil, want)
		}
	}

	dead := mkdir("dead", deadPid())
	copied := filepath.Join(dead, "bin", "sleep")
	b, err := os.ReadFile(sleepBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copied, b, 0o755); err != nil {
		t.Fatal(err)
	}
	byExe := start(exec.Command(copied, "600"))
	// The dir in its command line only (argv[0]); one process, not a shell
	// whose child would outlive the test.
	byArg := start(&exec.Cmd{Path: sleepBin, Args: []string{filepath.Join(dead, "x"), "600"}})
	byEnv := exec.Command("sleep", "600")
	byEnv.Env = append(os.Environ(), "PATH="+filepath.Join(dead, "bin")+":/usr/bin:/bin")
	byEnvDone := start(byEnv)

	// A mount left under the dead run's directory (a root share): it is
	// detached, and what it shows is not removed with the directory.
	shown := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(shown, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shown, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(dead, "state", "c1", "root")
	if os.Geteuid() == 0 {
		if err := os.MkdirAll(share, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(shown, share, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(share, unix.MNT_DETACH) })
	}

	live := mkdir("live", os.Getpid())
	ofLive := exec.Command("sleep", "600")
	ofLive.Env = append(os.Environ(), "X="+live)
	ofLiveDone := start(ofLive)

	busy := mkdir("busy", deadPid())
	inBusy := exec.Command("sleep", "600")
	inBusy.Dir = busy
	inBusyDone := start(inBusy)

	ownerless := mkdir("ownerless", 0)
	own := mkdir("own", deadPid())

	sweepWorkDirs(tmp, own)

	killed("a program of the dead run's", byExe)
	killed("a process naming the dead run's directory", byArg)
	killed("a process whose environment names the dead run's directory", byEnvDone)
	exists(dead, false)
	exists(filepath.Join(shown, "keep"), true)
	running("a process of a live run's", ofLiveDone)
	exists(live, true)
	running("a process working in a dead run's directory", inBusyDone)
	exists(busy, true)
	exists(ownerless, true)
	exists(own, true)
}
