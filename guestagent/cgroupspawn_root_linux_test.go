package guestagent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSpawnInCgroup: the helper starts in the container's cgroup (clone3's
// CLONE_INTO_CGROUP), with nothing written to cgroup.procs after.
func TestSpawnInCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a cgroup2 hierarchy")
	}
	mnt := t.TempDir()
	if err := unix.Mount("cgroup2", mnt, "cgroup2", 0, ""); err != nil {
		t.Skipf("needs a cgroup2 mount: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
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
