package vmm

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sleepSupervisor(t *testing.T, ready, shutdown func(context.Context) error) *Supervisor {
	dir := t.TempDir()
	cfg := &Config{ID: "s", StateDir: filepath.Join(dir, "state"), ConsoleLog: filepath.Join(dir, "console.log")}
	return &Supervisor{
		Cfg: cfg, Name: "sleep", Bin: "/bin/sleep", Args: []string{"60"}, Log: filepath.Join(dir, "sleep.log"),
		Sockets:      []string{cfg.SocketPath("a.sock")},
		StartTimeout: 300 * time.Millisecond, StopTimeout: 5 * time.Second,
		Ready: ready, Shutdown: shutdown,
	}
}

// A VMM that never gets ready is killed when StartTimeout passes.
func TestSupervisorStartTimeout(t *testing.T) {
	s := sleepSupervisor(t, func(context.Context) error { return errors.New("not yet") }, nil)
	err := s.Start(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "sleep (pid") || !strings.Contains(err.Error(), "not yet") {
		t.Fatalf("Start = %v, want a deadline error naming the process and the last readiness error", err)
	}
	if s.Pid() != 0 {
		t.Errorf("Pid after failed Start = %d", s.Pid())
	}
	if _, err := s.Running(); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Running after failed Start = %v", err)
	}
}

// When Shutdown fails, Stop falls back to SIGTERM, well before StopTimeout.
func TestSupervisorStopSIGTERM(t *testing.T) {
	s := sleepSupervisor(t, func(context.Context) error { return nil }, func(context.Context) error { return errors.New("no api") })
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	t0 := time.Now()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Stop took %s: SIGTERM should end sleep at once", d)
	}
	if err := s.Wait(); err != nil {
		t.Errorf("Wait after Stop = %v, want nil", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists", pid)
	}
}

// A VMM killed from outside is reported by Wait, with ErrVMExited.
func TestSupervisorWaitReportsCrash(t *testing.T) {
	s := sleepSupervisor(t, func(context.Context) error { return nil }, nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(s.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := s.Wait()
	if !errors.Is(err, ErrVMExited) || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("Wait = %v, want ErrVMExited naming the signal", err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("Stop after crash = %v", err)
	}
	if err := s.Wait(); !errors.Is(err, ErrVMExited) {
		t.Errorf("Wait after Stop of a crashed VMM = %v, want the crash still reported", err)
	}
}
