package guestagent

import (
	"sync"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// maxBootSteps bounds the steps a trace keeps: one per module and a few
// more; anything past it is folded into the last step.
const maxBootSteps = 64

// bootTrace records the agent's boot by the guest's clock (CLOCK_BOOTTIME):
// when /init started, each step after it, and when the agent served. The
// steps tile the time from init to ready: each runs from the end of the one
// before.
type bootTrace struct {
	clock func() time.Duration

	mu    sync.Mutex
	init  time.Duration
	last  time.Duration
	ready time.Duration
	steps []*agentapi.BootStep
}

// newBootTrace starts a trace at clock's now: call it first thing in /init.
func newBootTrace(clock func() time.Duration) *bootTrace {
	now := clock()
	return &bootTrace{clock: clock, init: now, last: now}
}

// mark ends a step named name at clock's now.
func (t *bootTrace) mark(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock()
	d := now - t.last
	t.last = now
	if len(t.steps) == maxBootSteps {
		t.steps[len(t.steps)-1].Micros += uint64(d / time.Microsecond)
		return
	}
	t.steps = append(t.steps, &agentapi.BootStep{Name: name, Micros: uint64(d / time.Microsecond)})
}

// setReady marks the step that ends with the agent serving (name) and
// records that moment as ready.
func (t *bootTrace) setReady(name string) {
	t.mark(name)
	t.mu.Lock()
	t.ready = t.last
	t.mu.Unlock()
}

// fill copies the trace into a Ping response.
func (t *bootTrace) fill(r *agentapi.PingResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.InitMicros = uint64(t.init / time.Microsecond)
	r.ReadyMicros = uint64(t.ready / time.Microsecond)
	r.BootMillis = uint64(t.ready / time.Millisecond)
	r.BootSteps = make([]*agentapi.BootStep, len(t.steps))
	for i, s := range t.steps {
		r.BootSteps[i] = &agentapi.BootStep{Name: s.Name, Micros: s.Micros}
	}
}
