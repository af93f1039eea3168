package runtime

import (
	"context"
	"fmt"
	"sync"
)

// clockStepsFunc starts reporting the steps of the host's wall clock
// (hostClockSteps): a channel with a value after each, and stop.
type clockStepsFunc func() (steps <-chan struct{}, stop func(), err error)

// clockWatch is the report of the host's clock steps that a VM's boot
// starts (watchClock), so that a step during the boot is not missed:
// FollowHostClock acts on it once the VM runs.
type clockWatch struct {
	steps    <-chan struct{}
	stop     func()
	stopOnce sync.Once
}

func (w *clockWatch) close() {
	if w != nil {
		w.stopOnce.Do(w.stop)
	}
}

// watchClock starts the report of the host's clock steps for a VM about to
// boot (start nil: none). A host that cannot report them is a warning:
// the VM still starts.
func (inst *Instance) watchClock(start clockStepsFunc) {
	if start == nil {
		return
	}
	steps, stop, err := start()
	if err != nil {
		inst.Warnings = append(inst.Warnings, fmt.Sprintf("container %q: the guest's clock will not follow the host's: %v", inst.ID, err))
		return
	}
	inst.clock = &clockWatch{steps: steps, stop: stop}
}

// FollowHostClock keeps the guest's wall clock the host's until the VMM
// exits: after each step of the host's clock since the VM's boot began (an
// NTP daemon's step at the host's boot, an admin's date -s, a resume from
// suspend) it sets the guest's to it and reseeds its random generator, as
// after a restore (resync). A guest kernel keeps its own time from its
// clocksource once booted and never sees a host step: without this, a
// container whose VM booted before the host's clock was set keeps the
// wrong time (runc's containers read the host's clock itself). A VM paused
// whole is skipped (Resume resyncs it). logf gets what fails. The VM's
// owner calls it once; a pod member's VM is its sandbox's, which follows
// for it (a member has no watch).
func (inst *Instance) FollowHostClock(logf func(format string, args ...any)) {
	w := inst.clock
	if w == nil || inst.pod != nil || inst.remote != nil {
		return
	}
	exited := inst.exited
	go func() {
		defer w.close()
		for {
			select {
			case <-exited:
				return
			case <-w.steps:
			}
			if inst.paused.Load() {
				continue
			}
			if err := inst.resync(context.Background()); err != nil {
				select {
				case <-exited: // the VM ended meanwhile: nothing to set
					return
				default:
				}
				logf("container %q: setting the guest's clock after a step of the host's: %v", inst.ID, err)
			}
		}
	}()
}
