package runtime

import (
	"fmt"
	"strings"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// GuestBoot is the guest's own account of its boot, by its clock
// (CLOCK_BOOTTIME). Under TCG that clock stands still for a part of the
// kernel's early boot, so Init is less than the wall time it took.
type GuestBoot struct {
	Init  time.Duration // kernel start → the agent (/init) starts
	Ready time.Duration // kernel start → the agent serves
	Steps []BootStep    // the agent's steps from Init to Ready, in order
}

// BootStep is one step of the agent's boot.
type BootStep struct {
	Name string // "mounts", "module <name>", "network", "transport"
	Took time.Duration
}

// Bounds on what a guest may report of its boot: the agent is not
// trusted (agentreply.go).
const (
	maxGuestSteps    = 64
	maxGuestStepName = 64
	maxGuestTime     = time.Hour
)

// guestBoot reads a Ping reply's boot trace; an agent that reports none
// (an older one) gives the zero GuestBoot.
func guestBoot(r *agentapi.PingResponse) GuestBoot {
	if r == nil {
		return GuestBoot{}
	}
	g := GuestBoot{Init: micros(r.InitMicros), Ready: micros(r.ReadyMicros)}
	for i, s := range r.BootSteps {
		if i == maxGuestSteps {
			break
		}
		g.Steps = append(g.Steps, BootStep{Name: guestText(s.Name, maxGuestStepName), Took: micros(s.Micros)})
	}
	return g
}

// micros is a guest-reported duration, bounded.
func micros(us uint64) time.Duration {
	if us > uint64(maxGuestTime/time.Microsecond) {
		return maxGuestTime
	}
	return time.Duration(us) * time.Microsecond
}

// String is the guest's boot on one line: "kernel=… agent=… (step=… …)",
// each step's name with its spaces as colons ("module:btrfs=…").
func (g GuestBoot) String() string {
	if g.Ready == 0 {
		return "kernel=? agent=? (the agent reports no boot trace)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kernel=%s agent=%s (", g.Init.Round(time.Millisecond), (g.Ready - g.Init).Round(time.Millisecond))
	for i, s := range g.Steps {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", strings.ReplaceAll(s.Name, " ", ":"), s.Took.Round(10*time.Microsecond))
	}
	b.WriteByte(')')
	return b.String()
}
