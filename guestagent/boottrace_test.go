package guestagent

import (
	"fmt"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// fakeClock returns start, then advances by step at each call.
func fakeClock(start, step time.Duration) func() time.Duration {
	now := start - step
	return func() time.Duration { now += step; return now }
}

func TestBootTrace(t *testing.T) {
	tests := []struct {
		name      string
		marks     int // steps before ready
		wantSteps int
		lastSteps uint64 // micros of the last step
	}{
		{"no step", 0, 1, 10000},
		{"a few", 3, 4, 10000},
		{"at the cap", maxBootSteps - 1, maxBootSteps, 10000},
		// Past the cap, the extra time folds into the last step.
		{"past the cap", maxBootSteps + 5, maxBootSteps, 7 * 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newBootTrace(fakeClock(time.Second, 10*time.Millisecond))
			for i := 0; i < tt.marks; i++ {
				tr.mark(fmt.Sprintf("module m%d", i))
			}
			tr.setReady("transport")
			var r agentapi.PingResponse
			tr.fill(&r)
			if len(r.BootSteps) != tt.wantSteps {
				t.Fatalf("%d steps, want %d", len(r.BootSteps), tt.wantSteps)
			}
			if r.InitMicros != 1000000 {
				t.Errorf("init %d µs, want 1000000", r.InitMicros)
			}
			wantReady := uint64(1000000 + 10000*(tt.marks+1))
			if r.ReadyMicros != wantReady || r.BootMillis != wantReady/1000 {
				t.Errorf("ready %d µs (%d ms), want %d µs", r.ReadyMicros, r.BootMillis, wantReady)
			}
			// The steps tile init → ready.
			var sum uint64
			for _, s := range r.BootSteps {
				sum += s.Micros
			}
			if sum != r.ReadyMicros-r.InitMicros {
				t.Errorf("steps sum to %d µs, want %d", sum, r.ReadyMicros-r.InitMicros)
			}
			if got := r.BootSteps[len(r.BootSteps)-1].Micros; got != tt.lastSteps {
				t.Errorf("last step %d µs, want %d", got, tt.lastSteps)
			}
			if tt.marks < maxBootSteps && r.BootSteps[len(r.BootSteps)-1].Name != "transport" {
				t.Errorf("last step %q, want transport", r.BootSteps[len(r.BootSteps)-1].Name)
			}
		})
	}
}
