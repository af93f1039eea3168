package runtime

import "context"

// clockStepsFunc starts reporting the steps of the host's wall clock
// (hostClockSteps): a channel with a value after each, and stop.
type clockStepsFunc func() (steps <-chan struct{}, stop func(), err error)

// FollowHostClock keeps the guest's wall clock the host's until the VMM
// exits: after each step of the host's clock (an NTP daemon's step at the
// host's boot, an admin's date -s, a resume from suspend) it sets the
// guest's to it and reseeds its random generator, as after a restore
// (resync). A guest kernel keeps its own time from its clocksource once
// booted and never sees a host step: without this, a container whose VM
// booted before the host's clock was set keeps the wrong time (runc's
// containers read the host's clock itself). A VM paused whole is skipped
// (Resume resyncs it). logf gets what fails. The VM's owner calls it once:
// a pod member's VM is its sandbox's, which follows for it.
func (inst *Instance) FollowHostClock(logf func(format string, args ...any)) {
	inst.followClock(hostClockSteps, logf)
}

// followClock is FollowHostClock with the steps' source injected.
func (inst *Instance) followClock(start clockStepsFunc, logf func(format string, args ...any)) {
	if inst.pod != nil || inst.remote != nil {
		return
	}
	steps, stop, err := start()
	if err != nil {
		logf("container %q: the guest's clock will not follow the host's: %v", inst.ID, err)
		return
	}
	exited := inst.exited
	go func() {
		defer stop()
		for {
			select {
			case <-exited:
				return
			case <-steps:
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
