package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
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

func TestPlanUpdate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name    string
		r       *specs.LinuxResources
		want    *agentapi.CgroupLimits
		refused string // "" = accepted
	}{
		{"nothing", &specs.LinuxResources{}, nil, ""},
		{"same memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(512 << 20)}}, &agentapi.CgroupLimits{MemoryBytes: 512 << 20}, ""},
		{"less memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20)}}, &agentapi.CgroupLimits{MemoryBytes: 256 << 20}, ""},
		{"more memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}, nil, "memory limit above the VM's memory (512 MiB → 1024 MiB)"},
		{"pids", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(100)}}, &agentapi.CgroupLimits{Pids: 100}, ""},
		{"half a cpu and shares", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000), Shares: u64(1024)}},
			&agentapi.CgroupLimits{CpuQuotaUs: 50000, CpuPeriodUs: 100000, CpuWeight: 39}, ""},
		{"two cpus", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(200000), Period: u64(100000)}}, nil, "CPU quota above the VM's CPUs (1 → 2 CPUs)"},
		{"cpuset and blkio", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}, BlockIO: &specs.LinuxBlockIO{Weight: func() *uint16 { w := uint16(10); return &w }()}},
			nil, "cpuset, block I/O limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanUpdate("c1", 512, 1, tc.r)
			if tc.refused != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.refused) || got != nil {
					t.Fatalf("PlanUpdate = %v, %v; want ErrUnsupported naming %q", got, err, tc.refused)
				}
				return
			}
			if err != nil || !proto.Equal(got, tc.want) {
				t.Fatalf("PlanUpdate = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestUpdateStopped(t *testing.T) {
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

// TestCheckBlockIO: a spec's block I/O limits are refused at create, not
// dropped; an empty blockIO section is fine.
func TestCheckBlockIO(t *testing.T) {
	w := uint16(300)
	for _, tc := range []struct {
		name string
		io   *specs.LinuxBlockIO
		want bool // refused
	}{
		{"none", nil, false},
		{"empty", &specs.LinuxBlockIO{}, false},
		{"weight", &specs.LinuxBlockIO{Weight: &w}, true},
		{"read bps", &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1 << 20}}}, true},
		{"write iops", &specs.LinuxBlockIO{ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{Rate: 10}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{BlockIO: tc.io}}}
			err := checkBlockIO(s)
			if tc.want != (err != nil) || err != nil && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "--device-read-bps")) {
				t.Errorf("checkBlockIO = %v, want refused %v", err, tc.want)
			}
		})
	}
}
