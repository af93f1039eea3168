package vmm

import (
	"context"
	"errors"
	"os"
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

// Kill ends the VMM at once without its Shutdown, removes its sockets, and
// Wait reports a clean exit (as after Stop, unlike an outside kill); Stop
// and Kill after it are no-ops.
func TestSupervisorKill(t *testing.T) {
	shutdowns := 0
	s := sleepSupervisor(t, func(context.Context) error { return nil }, func(context.Context) error { shutdowns++; return nil })
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill before Start: %v", err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Errorf("Wait after Kill = %v, want nil", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists", pid)
	}
	if shutdowns != 0 {
		t.Errorf("Kill asked the VMM to shut down %d times", shutdowns)
	}
	for _, sock := range s.SocketPaths() {
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left after Kill: %v", sock, err)
		}
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop after Kill: %v", err)
	}
	if err := s.Kill(); err != nil {
		t.Errorf("Kill after Kill: %v", err)
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

// A virtiofsd that ends under a running VMM stops the VMM (its guest's
// files are gone), and Wait says which share's virtiofsd ended and how; a
// virtiofsd that Stop ends, or that follows its VMM, does not count as
// lost.
func TestSupervisorVirtiofsdLost(t *testing.T) {
	for _, mode := range []string{"killed", "stopped", "vmm-first"} {
		stop, vmmFirst := mode == "stopped", mode == "vmm-first"
		t.Run(mode, func(t *testing.T) {
			s := sleepSupervisor(t, func(context.Context) error { return nil }, func(context.Context) error { return errors.New("no api") })
			s.VirtiofsdGrace = 100 * time.Millisecond
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			vm, err := s.Running()
			if err != nil {
				t.Fatal(err)
			}
			vfsd, err := StartProcess("virtiofsd", "/bin/sleep", []string{"60"}, filepath.Join(t.TempDir(), "vfsd.log"))
			if err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			s.vfsd = append(s.vfsd, vfsd)
			s.mu.Unlock()
			go s.watchVirtiofsd(vfsd, "initos-root", vm)
			if stop {
				if err := s.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := s.Wait(); err != nil {
					t.Errorf("Wait after Stop = %v, want nil", err)
				}
				return
			}
			if vmmFirst {
				// The VMM crashes; its virtiofsd follows (its client is
				// gone): the VMM's crash is what Wait reports.
				if err := vm.Kill(); err != nil {
					t.Fatal(err)
				}
				_ = vfsd.Kill()
				if err := s.Wait(); !errors.Is(err, ErrVMExited) || strings.Contains(err.Error(), "virtiofsd") {
					t.Errorf("Wait = %v, want the VMM's crash, not virtiofsd's", err)
				}
				_ = s.Stop(context.Background())
				return
			}
			if err := vfsd.Kill(); err != nil {
				t.Fatal(err)
			}
			err = s.Wait()
			if !errors.Is(err, ErrVMExited) || !strings.Contains(err.Error(), `virtiofsd of share "initos-root"`) || !strings.Contains(err.Error(), "so the VMM was stopped") {
				t.Errorf("Wait = %v, want ErrVMExited naming the virtiofsd that ended", err)
			}
			if err := s.Stop(context.Background()); err != nil {
				t.Errorf("Stop = %v", err)
			}
		})
	}
}

// A virtiofsd that fails once started ends the VMM's connection to its
// socket, and the VMM with it: Start says what virtiofsd said.
func TestSupervisorVirtiofsdFailsFirst(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "virtiofsd")
	script := "#!/bin/sh\ncase \"$1\" in --help) echo '    -o source=PATH'; exit 0;; esac\necho 'fuse: cannot serve this share' >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := sleepSupervisor(t, func(context.Context) error { return errors.New("not yet") }, nil)
	s.Bin, s.Args = "/bin/sh", []string{"-c", "sleep 0.3; echo 'Failed to read msg header' >&2; exit 1"}
	s.StartTimeout = 5 * time.Second
	s.Virtiofsd = fake
	s.Cfg.Shares = []Share{{Tag: "initos-root", Mode: ShareVirtiofs, Dir: dir}}
	err := s.Start(context.Background())
	if !errors.Is(err, ErrVMExited) || !strings.Contains(err.Error(), `virtiofsd of share "initos-root" had ended`) || !strings.Contains(err.Error(), "cannot serve this share") {
		t.Fatalf("Start = %v, want the VMM's exit and virtiofsd's reason", err)
	}
	if _, err := os.Lstat(s.Cfg.SocketPath(VirtiofsSocket(0))); !os.IsNotExist(err) {
		t.Errorf("virtiofsd's socket left behind: %v", err)
	}
}

// The VMM starts with Cfg.OOMScoreAdj; SetOOMScoreAdj changes it while it
// runs, refuses before Start, and skips it once it has exited.
func TestSupervisorOOMScoreAdj(t *testing.T) {
	adj := raisedOOMScoreAdj(t)
	s := sleepSupervisor(t, func(context.Context) error { return nil }, func(context.Context) error { return errors.New("no api") })
	if err := s.SetOOMScoreAdj(adj); !errors.Is(err, ErrNotStarted) {
		t.Errorf("SetOOMScoreAdj before Start = %v, want ErrNotStarted", err)
	}
	s.Cfg.OOMScoreAdj = &adj
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(ctx)
	if got := readOOMScoreAdj(t, s.Pid()); got != adj {
		t.Errorf("the VMM started with oom_score_adj %d, want %d", got, adj)
	}
	if err := s.SetOOMScoreAdj(1000); err != nil {
		t.Fatal(err)
	}
	if got := readOOMScoreAdj(t, s.Pid()); got != 1000 {
		t.Errorf("after SetOOMScoreAdj(1000): %d", got)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOOMScoreAdj(1000); err != nil {
		t.Errorf("SetOOMScoreAdj after the VMM exited: %v", err)
	}
}
