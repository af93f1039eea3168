package runtime

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSpawnReadyLeavesTheExitStatus: a process that reports ready and ends
// at once stays waitable for whoever inherits it (conmon waits for the pid
// create and exec --detach report); spawnReady must not reap it. Before,
// its watcher reaped it, and podman exec of a short command exited 255.
func TestSpawnReadyLeavesTheExitStatus(t *testing.T) {
	for i := 0; i < 20; i++ {
		cmd := exec.Command("sh", "-c", "echo ok >&3; exit 7")
		pid, err := spawnReady(context.Background(), cmd, 10*time.Second, "test helper", nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // it has exited; the watcher has seen it
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, 0, nil)
		if err != nil || got != pid || ws.ExitStatus() != 7 {
			t.Fatalf("run %d: wait4(%d) = %d, %v, status %d: want the exit status 7 still there", i, pid, got, err, ws.ExitStatus())
		}
	}
}

// TestSpawnReadyReapsFailures: a process that fails before ready is reaped
// and its error returned.
func TestSpawnReadyReapsFailures(t *testing.T) {
	cmd := exec.Command("sh", "-c", "echo 'error: no such container' >&3; exit 1")
	_, err := spawnReady(context.Background(), cmd, 10*time.Second, "test helper", nil)
	if err == nil || !strings.Contains(err.Error(), "no such container") {
		t.Fatalf("error %v, want the helper's", err)
	}
	if cmd.ProcessState == nil {
		t.Error("the failed helper was not reaped")
	}
}

// TestSpawnReadyDeadline: a process that never says it is ready is stopped
// and reaped at the deadline, with errNotReady (to which Create adds the
// console's tail), and started learns its pid first.
func TestSpawnReadyDeadline(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	var told int
	_, err := spawnReady(context.Background(), cmd, 200*time.Millisecond, "test helper", func(pid int) error { told = pid; return nil })
	if !errors.Is(err, errNotReady) || !strings.Contains(err.Error(), "test helper: not ready within 200ms") {
		t.Fatalf("error %v, want errNotReady naming the helper and the deadline", err)
	}
	if cmd.ProcessState == nil || told != cmd.Process.Pid {
		t.Errorf("reaped %v, started told pid %d of %d", cmd.ProcessState, told, cmd.Process.Pid)
	}
}
