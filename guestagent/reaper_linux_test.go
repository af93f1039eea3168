package guestagent

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		ws   unix.WaitStatus
		want int32
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3 << 8, 3},
		{"exit 255", 255 << 8, 255},
		{"SIGKILL", unix.WaitStatus(unix.SIGKILL), 137},
		{"SIGTERM", unix.WaitStatus(unix.SIGTERM), 143},
		{"SIGSEGV with core", unix.WaitStatus(unix.SIGSEGV) | 0x80, 139},
		{"stopped", unix.WaitStatus(unix.SIGSTOP<<8 | 0x7f), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitStatus(tt.ws); got != tt.want {
				t.Errorf("exitStatus(%#x) = %d, want %d", uint32(tt.ws), got, tt.want)
			}
		})
	}
}

// startShell starts /bin/sh -c script through the reaper.
func startShell(t *testing.T, r *reaper, script string) (int, chan exitInfo) {
	t.Helper()
	ch := make(chan exitInfo, 1)
	pid, err := r.Start(func() (int, error) {
		return syscall.ForkExec("/bin/sh", []string{"sh", "-c", script}, &syscall.ProcAttr{
			Env: []string{"PATH=/usr/bin:/bin"},
		})
	}, func(e exitInfo) { ch <- e })
	if err != nil {
		t.Fatalf("starting sh: %v", err)
	}
	return pid, ch
}

func waitExit(t *testing.T, ch chan exitInfo) exitInfo {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status within 10s")
		return exitInfo{}
	}
}

func TestReaper(t *testing.T) {
	r := newReaper()
	r.Run()
	defer r.Stop()

	_, ch := startShell(t, r, "exit 3")
	if e := waitExit(t, ch); e.Status != 3 || e.At.IsZero() {
		t.Errorf("exit 3: got %+v", e)
	}
	pid, ch := startShell(t, r, "sleep 30")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, ch); e.Status != 137 {
		t.Errorf("killed: got %d, want 137", e.Status)
	}
	// Many quick exits at once: SIGCHLDs coalesce, statuses must not.
	var chans []chan exitInfo
	for i := 0; i < 20; i++ {
		_, ch := startShell(t, r, "exit "+strconv.Itoa(i))
		chans = append(chans, ch)
	}
	for i, ch := range chans {
		if e := waitExit(t, ch); e.Status != int32(i) {
			t.Errorf("child %d: status %d", i, e.Status)
		}
	}
}

// TestReaperReapsOrphans makes the test process a child subreaper, so that a
// grandchild whose parent exits is re-parented to it as orphans are to PID 1,
// and checks that the reaper collects it without a registered waiter.
func TestReaperReapsOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	r := newReaper()
	r.Run()
	defer r.Stop()

	dir := t.TempDir()
	pidFile := dir + "/orphan"
	_, ch := startShell(t, r, "sleep 0.2 & echo $! > "+pidFile+"; exit 0")
	waitExit(t, ch)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(string(data[:len(data)-1]))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Once reaped, the pid is gone: kill(pid, 0) fails with ESRCH.
		// A zombie would still answer.
		if err := syscall.Kill(orphan, 0); err == syscall.ESRCH {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d was not reaped", orphan)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
