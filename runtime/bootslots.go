package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// Boot slots: under TCG a VM's boot (or restore) and setup are the host's
// CPU work, so ten VMs starting at once on two CPUs each take about five
// times as long as one alone, and all finish together at the end. With at
// most one boot per CPU at a time the first starts finish as fast as one
// alone and the last no later than before (docs/boot-budget.md). The
// slots are lock files under the data directory, so every engine's starts
// (the CLI's, podman's, containerd's shims) share them; a holder that dies
// releases its slot with its descriptor.

// bootSlotPoll is how often a start waiting for a slot tries again.
const bootSlotPoll = 10 * time.Millisecond

// bootSlots is how many VMs may boot at once: the config's
// bootConcurrency, else the host's CPUs under TCG; 0 is no limit (KVM's
// boots wait on the guest, not on the host's CPUs).
func bootSlots(c Config, accel vmm.Accel) int {
	switch {
	case c.BootConcurrency > 0:
		return c.BootConcurrency
	case c.BootConcurrency < 0:
		return 0
	case accel.Name == vmm.AccelTCG:
		return goruntime.NumCPU()
	}
	return 0
}

// acquireBootSlot takes one of n slots in dir, waiting while all are held
// until ctx ends. release gives it back; with n 0 there is nothing to take.
func acquireBootSlot(ctx context.Context, dir string, n int) (release func(), err error) {
	if n <= 0 {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the boot slots' directory: %w", err)
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("slot%d", i))
	}
	return lockAny(ctx, paths, bootSlotPoll, fmt.Sprintf("one of the %d boot slots in %s (other VMs are booting)", n, dir))
}
