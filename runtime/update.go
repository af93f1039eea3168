package runtime

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update applies new resource limits to a container. A VM's memory and
// CPUs are fixed when it boots (neither driver hot-plugs them here), and
// the guest does not apply cgroup limits: a request that would change
// anything is refused with the list of what cannot change, and a request
// that changes nothing succeeds, as with runc.
func Update(c Config, id string, r *specs.LinuxResources) error {
	st, err := loadState(c, id)
	if err != nil {
		return err
	}
	if st.Status == StatusStopped {
		return fmt.Errorf("cannot update container %q: it is stopped: %w", id, ErrWrongState)
	}
	return CheckUpdate(id, st.MemoryMiB, st.CPUs, r)
}

// CheckUpdate decides an update of a running VM sized memMiB and cpus: a
// request that would change anything is refused, naming each limit that
// cannot change; a request that changes nothing succeeds, as with runc.
func CheckUpdate(id string, memMiB, cpus int, r *specs.LinuxResources) error {
	want, wantCPUs := vmSize(Config{MemoryMiB: memMiB, CPUs: cpus}, &specs.Spec{Linux: &specs.Linux{Resources: r}})
	var refused []string
	if want != memMiB {
		refused = append(refused, fmt.Sprintf("memory limit (%d MiB → %d MiB)", memMiB, want))
	}
	if wantCPUs != cpus {
		refused = append(refused, fmt.Sprintf("CPU quota (%d → %d CPUs)", cpus, wantCPUs))
	}
	if r != nil {
		if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit > 0 {
			refused = append(refused, "pids limit")
		}
		if r.BlockIO != nil && (r.BlockIO.Weight != nil || len(r.BlockIO.ThrottleReadBpsDevice)+len(r.BlockIO.ThrottleWriteBpsDevice)+len(r.BlockIO.ThrottleReadIOPSDevice)+len(r.BlockIO.ThrottleWriteIOPSDevice) > 0) {
			refused = append(refused, "block I/O limits")
		}
		if r.CPU != nil && (r.CPU.Cpus != "" || r.CPU.Mems != "") {
			refused = append(refused, "cpuset")
		}
		if r.CPU != nil && r.CPU.Shares != nil && *r.CPU.Shares > 0 {
			refused = append(refused, "CPU shares")
		}
		if r.Memory != nil && ((r.Memory.Reservation != nil && *r.Memory.Reservation > 0) || (r.Memory.Swap != nil && *r.Memory.Swap > 0)) {
			refused = append(refused, "memory reservation/swap")
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("cannot update container %q: %w: a VM's %s cannot change while it runs (set limits before create)", id, ErrUnsupported, strings.Join(refused, ", "))
	}
	return nil
}
