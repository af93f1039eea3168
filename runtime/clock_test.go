package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClockSteps is a clockStepsFunc whose steps the test sends: each send
// returns once the follower has taken it, so a second send returns only
// after the first was handled.
type fakeClockSteps struct {
	steps   chan struct{}
	stopped chan struct{}
	err     error
	starts  int
}

func newFakeClockSteps() *fakeClockSteps {
	return &fakeClockSteps{steps: make(chan struct{}), stopped: make(chan struct{})}
}

func (f *fakeClockSteps) start() (<-chan struct{}, func(), error) {
	f.starts++
	if f.err != nil {
		return nil, nil, f.err
	}
	return f.steps, func() { close(f.stopped) }, nil
}

// step sends a step and fails t if the follower does not take it.
func (f *fakeClockSteps) step(t *testing.T) {
	t.Helper()
	select {
	case f.steps <- struct{}{}:
	case <-time.After(5 * time.Second):
		t.Fatal("the follower took no step")
	}
}

// logs collects what the follower logs.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// restoredCount is how many Restored calls the fake agent has had.
func restoredCount(h *fakeHost) int {
	h.agent.mu.Lock()
	defer h.agent.mu.Unlock()
	return len(h.agent.restored)
}

// waitRestored waits until the fake agent has had n Restored calls.
func waitRestored(t *testing.T, h *fakeHost, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for restoredCount(h) < n {
		if time.Now().After(deadline) {
			t.Fatalf("Restored calls: %d, want %d", restoredCount(h), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFollowHostClock: each step of the host's clock sets the guest's
// (Restored, with the host's time and fresh randomness), not while the
// VM is paused whole; a failure is logged; the follower stops with the
// VMM; a pod member's VM is not its to follow; a source that cannot start
// is logged.
func TestFollowHostClock(t *testing.T) {
	t.Run("steps", func(t *testing.T) {
		h := newFakeHost(t)
		c := testConfig(t)
		inst, err := boot(context.Background(), c, loadBundle(t, nil), "c1", mkStateDir(t, c, "c1"), false, h.deps())
		if err != nil {
			t.Fatal(err)
		}
		src, l := newFakeClockSteps(), &logs{}
		inst.followClock(src.start, l.logf)
		t0 := time.Now()
		src.step(t)
		waitRestored(t, h, 1)
		h.agent.mu.Lock()
		r := h.agent.restored[0]
		h.agent.mu.Unlock()
		if time.Unix(0, r.UnixNanos).Before(t0) || len(r.Entropy) != 64 {
			t.Errorf("Restored after a step: clock %v (step at %v), %d bytes of entropy", time.Unix(0, r.UnixNanos), t0, len(r.Entropy))
		}

		// Paused whole: the step is not sent (a second step returns
		// only once the first was handled).
		if err := inst.Pause(context.Background()); err != nil {
			t.Fatal(err)
		}
		src.step(t)
		src.step(t)
		if n := restoredCount(h); n != 1 {
			t.Errorf("Restored calls after steps while paused: %d, want 1", n)
		}
		if err := inst.Resume(context.Background()); err != nil { // resyncs itself
			t.Fatal(err)
		}
		src.step(t)
		waitRestored(t, h, 3)

		h.agent.mu.Lock()
		h.agent.restoredErr = errors.New("settimeofday: operation not permitted")
		h.agent.mu.Unlock()
		src.step(t)
		src.step(t)
		if got := l.get(); len(got) == 0 || !containsAll(got[0], `container "c1"`, "operation not permitted") {
			t.Errorf("logged %q, want the failed resync", got)
		}

		if err := inst.Shutdown(context.Background(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		select {
		case <-src.stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("the follower did not stop with the VMM")
		}
	})
	t.Run("member", func(t *testing.T) {
		src, l := newFakeClockSteps(), &logs{}
		(&Instance{ID: "m1", remote: &remoteSandbox{}, exited: make(chan struct{})}).followClock(src.start, l.logf)
		(&Instance{ID: "m2", pod: &Instance{}, exited: make(chan struct{})}).followClock(src.start, l.logf)
		if src.starts != 0 || len(l.get()) != 0 {
			t.Errorf("a member's follower started %d times, logged %q", src.starts, l.get())
		}
	})
	t.Run("no source", func(t *testing.T) {
		src, l := newFakeClockSteps(), &logs{}
		src.err = errors.New("timerfd_create: function not implemented")
		(&Instance{ID: "c2", exited: make(chan struct{})}).followClock(src.start, l.logf)
		if got := l.get(); len(got) != 1 || !containsAll(got[0], `container "c2"`, "not implemented") {
			t.Errorf("logged %q, want the source's error once", got)
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
