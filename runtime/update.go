package runtime

import (
	"context"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// Update applies new resource limits to a running container (runc's
// update): limits that fit the VM go to the container's cgroup in the
// guest; what would need a bigger VM (its memory and CPUs are fixed at
// boot) or has no meaning in it is refused, naming each, and nothing is
// applied.
func Update(c Config, id string, r *specs.LinuxResources) error {
	st, err := loadState(c, id)
	if err != nil {
		return err
	}
	if st.Status == StatusStopped {
		return fmt.Errorf("cannot update container %q: it is stopped: %w", id, ErrWrongState)
	}
	limits, err := PlanUpdate(id, st.MemoryMiB, st.CPUs, r)
	if err != nil || limits == nil {
		return err
	}
	cc, err := dialMonitor(c, id)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := cc.Agent.UpdateLimits(ctx, &agentapi.UpdateLimitsRequest{Limits: limits}); err != nil {
		return fmt.Errorf("updating the limits of container %q: %w", id, agentError(err))
	}
	return nil
}

// PlanUpdate turns an update of a container whose VM has memMiB and cpus
// into the limits for its guest cgroup (nil: nothing to change). A memory
// limit above the VM's memory or a CPU quota above its CPUs, a cpuset,
// block I/O limits, memory reservation or swap are refused, each named.
func PlanUpdate(id string, memMiB, cpus int, r *specs.LinuxResources) (*agentapi.CgroupLimits, error) {
	if r == nil {
		return nil, nil
	}
	var refused []string
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			if want := *m.Limit >> 20; want > int64(memMiB) {
				refused = append(refused, fmt.Sprintf("memory limit above the VM's memory (%d MiB → %d MiB)", memMiB, want))
			}
		}
		if (m.Reservation != nil && *m.Reservation > 0) || (m.Swap != nil && *m.Swap > 0) {
			refused = append(refused, "memory reservation/swap")
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Quota != nil && *cpu.Quota > 0 {
			period := uint64(100000)
			if cpu.Period != nil && *cpu.Period > 0 {
				period = *cpu.Period
			}
			if want := (uint64(*cpu.Quota) + period - 1) / period; want > uint64(cpus) {
				refused = append(refused, fmt.Sprintf("CPU quota above the VM's CPUs (%d → %d CPUs)", cpus, want))
			}
		}
		if cpu.Cpus != "" || cpu.Mems != "" {
			refused = append(refused, "cpuset")
		}
	}
	if hasBlockIOLimits(r) {
		refused = append(refused, "block I/O limits")
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("cannot update container %q: %w: %s (a VM's memory and CPUs are fixed at create)", id, ErrUnsupported, strings.Join(refused, ", "))
	}
	return resourceLimits(r), nil
}

// hasBlockIOLimits reports whether r limits block I/O (a weight or a
// throttle: podman's --blkio-weight, --device-read-bps and the like).
func hasBlockIOLimits(r *specs.LinuxResources) bool {
	b := r.BlockIO
	return b != nil && (b.Weight != nil || b.LeafWeight != nil || len(b.WeightDevice) > 0 ||
		len(b.ThrottleReadBpsDevice)+len(b.ThrottleWriteBpsDevice)+len(b.ThrottleReadIOPSDevice)+len(b.ThrottleWriteIOPSDevice) > 0)
}

// checkBlockIO refuses a spec's block I/O limits: they name the host's
// devices, which the guest does not have, and the guest's disk and share
// I/O is the VMM's on the host. Dropping them without a word would leave
// a container unthrottled that asked to be.
func checkBlockIO(s *specs.Spec) error {
	if s.Linux != nil && s.Linux.Resources != nil && hasBlockIOLimits(s.Linux.Resources) {
		return fmt.Errorf("%w: block I/O limits (linux.resources.blockIO: --blkio-weight, --device-read-bps and the like) name the host's devices, which a VM's guest does not have", ErrUnsupported)
	}
	return nil
}

// cpuWeight is runc's conversion of cgroup v1 CPU shares (2..262144) to
// cgroup v2's cpu.weight (1..10000); 0 without shares.
func cpuWeight(shares *uint64) uint64 {
	if shares == nil || *shares < 2 {
		return 0
	}
	return 1 + ((min(*shares, 262144)-2)*9999)/262142
}
