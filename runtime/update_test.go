package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// liveState writes a state whose "monitor" is the test process itself.
func liveState(t *testing.T, status Status) Config {
	t.Helper()
	c := Config{Root: t.TempDir()}
	start, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(c.Root, "c1")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st := &State{ID: "c1", Status: status, MonitorPid: os.Getpid(), MonitorStart: start, MemoryMiB: 512, CPUs: 1}
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUpdate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name string
		r    *specs.LinuxResources
		want string // "" = accepted
	}{
		{"nothing", &specs.LinuxResources{}, ""},
		{"same memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(512 << 20)}}, ""},
		{"more memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}, "memory limit (512 MiB → 1024 MiB)"},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(100)}}, "pids limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := liveState(t, StatusRunning)
			err := Update(c, "c1", tc.r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Update: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update: %v, want ErrUnsupported naming %q", err, tc.want)
			}
		})
	}
	c := liveState(t, StatusStopped)
	if err := Update(c, "c1", &specs.LinuxResources{}); !errors.Is(err, ErrWrongState) {
		t.Fatalf("update of a stopped container: %v", err)
	}
}

func TestLoadStateSettlesDeadMonitor(t *testing.T) {
	c := liveState(t, StatusRunning)
	st, err := loadState(c, "c1")
	if err != nil || st.Status != StatusRunning {
		t.Fatalf("live monitor: %v %v", st, err)
	}
	st.MonitorStart++ // a reused pid: another process
	if err := saveState(filepath.Join(c.Root, "c1"), st); err != nil {
		t.Fatal(err)
	}
	st, err = loadState(c, "c1")
	if err != nil || st.Status != StatusStopped || st.OCIState().Pid != 0 {
		t.Fatalf("reused pid: %+v %v; want stopped with pid 0", st, err)
	}
	if _, err := loadState(c, "nope"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing container: %v", err)
	}
}
