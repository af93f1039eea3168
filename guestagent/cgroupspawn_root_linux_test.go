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
)

// TestSpawnInCgroup: the helper starts in the container's cgroup (clone3's
// CLONE_INTO_CGROUP), with nothing written to cgroup.procs after.
func TestSpawnInCgroup(t *testing.T) {
	mnt := mountCgroup2(t, "")
	cg := filepath.Join(mnt, "c-spawn")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(cg) })

	r := newReaper()
	r.Run()
	t.Cleanup(r.Stop)
	l := newHelperLauncher(r, "/proc/self/exe")
	// The helper waits on its configuration until cfgW closes.
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer cfgR.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	files := []uintptr{null.Fd(), null.Fd(), null.Fd(), cfgR.Fd(), null.Fd(), null.Fd()}
	pid, exited, in, err := l.spawnInCgroup(launchRequest{}, files, 0, filepath.Join(cg, "cgroup.procs"))
	if err != nil || !in {
		cfgW.Close()
		t.Fatalf("spawnInCgroup = %v, in %v; want the helper in %s", err, in, cg)
	}
	data, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	cfgW.Close()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = unix.Kill(pid, unix.SIGKILL)
		t.Fatalf("the helper (pid %d) did not exit once its configuration closed", pid)
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(data)); len(got) != 1 || got[0] != strconv.Itoa(pid) {
		t.Errorf("%s/cgroup.procs = %q, want the helper's pid %d alone", cg, got, pid)
	}
}

// TestSpareInCgroup: a template's spare helper starts in the cgroup it is
// given, and the process that takes it is not moved there again; a
// process of another cgroup is.
func TestSpareInCgroup(t *testing.T) {
	mnt := mountCgroup2(t, "")
	tests := []struct {
		name     string
		launchIn string // the process's cgroup, beside the spare's "c-spare"
		wantMove bool
	}{
		{"its cgroup", "c-spare", false},
		{"another cgroup", "c-other", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range []string{"c-spare", "c-other"} {
				cg := filepath.Join(mnt, name)
				if err := os.Mkdir(cg, 0o755); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					// Empty once its processes are reaped.
					for i := 0; i < 100 && os.Remove(cg) != nil; i++ {
						time.Sleep(50 * time.Millisecond)
					}
				})
			}
			r := newReaper()
			r.Run()
			t.Cleanup(r.Stop)
			l := newHelperLauncher(r, "/proc/self/exe")
			var moves []string
			l.joinCgroup = func(procs string, pid, main int) error {
				moves = append(moves, procs)
				return joinCgroup(procs, pid, main)
			}
			spareCg := filepath.Join(mnt, "c-spare")
			if err := l.StartSpare(10*time.Second, spareCg); err != nil {
				t.Fatalf("StartSpare: %v", err)
			}
			sp := l.spare.spare
			procs := filepath.Join(spareCg, "cgroup.procs")
			if sp == nil || sp.procs != procs {
				t.Fatalf("spare %+v, want one in %s", sp, procs)
			}
			if got := cgroupPids(t, procs); len(got) != 1 || got[0] != strconv.Itoa(sp.pid) {
				t.Fatalf("%s = %q, want the spare's pid %d alone", procs, got, sp.pid)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			want := filepath.Join(mnt, tt.launchIn, "cgroup.procs")
			h, err := l.Launch(ctx, launchRequest{ID: "main", NewNamespaces: []string{"pid", "uts", "ipc"}, CgroupProcs: want,
				Process: &specs.Process{Args: []string{"true"}, Env: []string{"PATH=/bin:/usr/bin"}, Cwd: "/"}})
			if err != nil {
				t.Fatalf("Launch: %v", err)
			}
			if h.Pid != sp.pid {
				t.Errorf("the process is pid %d, not the spare's %d", h.Pid, sp.pid)
			}
			if got := cgroupPids(t, want); len(got) != 1 || got[0] != strconv.Itoa(h.Pid) {
				t.Errorf("%s = %q, want the process's pid %d alone", want, got, h.Pid)
			}
			if moved := len(moves) > 0; moved != tt.wantMove {
				t.Errorf("moves into a cgroup: %q; want a move: %v", moves, tt.wantMove)
			}
			if err := h.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			select {
			case e := <-h.Exited:
				if e.Status != 0 {
					t.Errorf("the process exited with %d", e.Status)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the process did not exit")
			}
		})
	}
}

// cgroupPids are the pids listed in a cgroup.procs file.
func cgroupPids(t *testing.T, procs string) []string {
	t.Helper()
	data, err := os.ReadFile(procs)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// mountCgroup2 mounts a cgroup2 hierarchy of the test's own, skipping the
// test without root (and what else it needs, also) or a cgroup2.
func mountCgroup2(t *testing.T, also string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a cgroup2 hierarchy" + also)
	}
	mnt := t.TempDir()
	if err := unix.Mount("cgroup2", mnt, "cgroup2", 0, ""); err != nil {
		t.Skipf("needs a cgroup2 mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}
