package guestagent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// TestHelperSpare: a template's spare helper becomes the first process of
// a container with PID, UTS and IPC namespaces of its own (podman's), in a
// mount namespace it makes once used; a first process that does not fit
// it (no PID namespace of its own) gets a helper of its own, and the
// spare exits; a spare is used once.
func TestHelperSpare(t *testing.T) {
	tests := []struct {
		name     string
		ownPidns bool
		wantUsed bool
	}{
		{"fits", true, true},
		{"does not fit", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rootService(t)
			root := s.containers[""].rootfs
			if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
				t.Fatal(err)
			}
			// A mount point, as Setup leaves it: pivot_root's new root.
			if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for unix.Unmount(filepath.Join(root, "proc"), unix.MNT_DETACH) == nil {
				}
				_ = unix.Unmount(root, unix.MNT_DETACH)
			})
			c := s.containers[""]
			c.newNs, c.ownPidns, c.hostname = []string{"uts", "ipc", "mount"}, tt.ownPidns, "spare-host"
			l := s.launcher.(*helperLauncher)
			if err := l.StartSpare(10*time.Second, ""); err != nil {
				t.Fatalf("StartSpare: %v", err)
			}
			sp := l.spare.spare
			if sp == nil {
				t.Fatal("no spare after StartSpare")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			p := specs.Process{Args: []string{"sh", "-c", "echo $$; hostname; if [ -e /proc/self ]; then readlink /proc/self/ns/mnt; fi"}, Env: []string{"PATH=/bin"}, Cwd: "/"}
			resp, err := s.CreateProcess(ctx, &agentapi.CreateProcessRequest{Id: "main", ProcessJson: processJSON(t, p)})
			if err != nil {
				t.Fatalf("CreateProcess: %v", err)
			}
			if used := int(resp.Pid) == sp.pid; used != tt.wantUsed {
				t.Errorf("process pid %d, spare %d: used %v, want %v", resp.Pid, sp.pid, used, tt.wantUsed)
			}
			if !tt.wantUsed {
				select {
				case <-sp.exited:
				case <-time.After(10 * time.Second):
					t.Error("the spare that did not fit is still running")
				}
			}
			if _, err := s.StartProcess(ctx, &agentapi.ProcessRequest{Id: "main"}); err != nil {
				t.Fatalf("StartProcess: %v", err)
			}
			if _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{Id: "main"}); err != nil {
				t.Fatal(err)
			}
			out := readAllStream(t, s.ReadStdout, "main")
			if e := readAllStream(t, s.ReadStderr, "main"); e != "" {
				t.Logf("stderr: %s", e)
			}
			if w, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{Id: "main"}); err != nil || w.ExitStatus != 0 {
				t.Fatalf("WaitProcess = %v, %v; stdout %q", w, err, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			agentMnt, err := os.Readlink("/proc/self/ns/mnt")
			if err != nil {
				t.Fatal(err)
			}
			// Without a PID namespace of its own, no proc is mounted for it.
			wantPid, wantLines := "1", 3
			if !tt.ownPidns {
				wantPid, wantLines = strconv.Itoa(int(resp.Pid)), 2
			}
			if len(lines) != wantLines || lines[0] != wantPid || lines[1] != "spare-host" || wantLines == 3 && lines[2] == agentMnt {
				t.Errorf("the process saw %q; want pid %s, hostname spare-host and a mount namespace other than %s", out, wantPid, agentMnt)
			}
			if l.spare.spare != nil || l.StartSpare(time.Second, "") != nil || l.spare.spare != nil {
				t.Error("a launcher's spare is not used once only")
			}
		})
	}
}
