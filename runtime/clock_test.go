package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeClockSteps is a clockStepsFunc whose steps the test sends. With an
// unbuffered channel each send returns once the follower has taken it, so
// a second send returns only after the first was handled; with a buffer
// of one (the real source's) a step may wait for the follower.
type fakeClockSteps struct {
	steps   chan struct{}
	stopped chan struct{}
	err     error
	starts  int
	// startsAtVM is starts when the boot made its VM (bootWithClock).
	startsAtVM int
}

func newFakeClockSteps(buffer int) *fakeClockSteps {
	return &fakeClockSteps{steps: make(chan struct{}, buffer), stopped: make(chan struct{})}
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

// waitStopped fails t unless the source is stopped.
func (f *fakeClockSteps) waitStopped(t *testing.T, what string) {
	t.Helper()
	select {
	case <-f.stopped:
	case <-time.After(5 * time.Second):
		t.Fatalf("the clock steps' source was not stopped %s", what)
	}
}

// bootWithClock boots a fake VM whose host clock steps come from src.
func bootWithClock(t *testing.T, h *fakeHost, id string, src *fakeClockSteps) *Instance {
	t.Helper()
	c := testConfig(t)
	d := h.deps()
	d.clockSteps = src.start
	newVM := d.newVM
	d.newVM = func(driver string, cfg vmm.Config, c Config) (VM, error) {
		src.startsAtVM = src.starts
		return newVM(driver, cfg, c)
	}
	inst, err := boot(context.Background(), c, loadBundle(t, nil), id, mkStateDir(t, c, id), false, d)
	if err != nil {
		t.Fatal(err)
	}
	return inst
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
// (Restored, with the host's time and fresh randomness), a step during the
// boot too, not while the VM is paused whole; a failure is logged; the
// watch ends with the VMM, or with the VM's teardown when nobody followed
// it; a pod member's VM is not its to follow; a host that cannot report
// steps is a warning of the boot.
func TestFollowHostClock(t *testing.T) {
	t.Run("steps", func(t *testing.T) {
		h := newFakeHost(t)
		src, l := newFakeClockSteps(0), &logs{}
		inst := bootWithClock(t, h, "c1", src)
		inst.FollowHostClock(l.logf)
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
		src.waitStopped(t, "with the VMM")
	})
	t.Run("step during the boot", func(t *testing.T) {
		h := newFakeHost(t)
		src := newFakeClockSteps(1)
		inst := bootWithClock(t, h, "c2", src)
		t.Cleanup(func() { _ = inst.Shutdown(context.Background(), 5*time.Second) })
		if src.startsAtVM != 1 {
			t.Errorf("the host's clock watched from after the VM's start (%d starts then)", src.startsAtVM)
		}
		src.step(t) // before the owner follows: kept
		if n := restoredCount(h); n != 0 {
			t.Fatalf("Restored calls before FollowHostClock: %d", n)
		}
		inst.FollowHostClock(t.Errorf)
		waitRestored(t, h, 1)
	})
	t.Run("never followed", func(t *testing.T) {
		h := newFakeHost(t)
		src := newFakeClockSteps(0)
		inst := bootWithClock(t, h, "c3", src)
		if err := inst.Shutdown(context.Background(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		src.waitStopped(t, "at the teardown")
	})
	t.Run("member", func(t *testing.T) {
		src := newFakeClockSteps(0)
		for _, m := range []*Instance{{ID: "m1", remote: &remoteSandbox{}}, {ID: "m2", pod: &Instance{}}} {
			m.exited, m.clock = make(chan struct{}), &clockWatch{steps: src.steps, stop: func() {}}
			m.FollowHostClock(t.Errorf)
		}
		select {
		case src.steps <- struct{}{}:
			t.Error("a member followed the host's clock")
		case <-time.After(50 * time.Millisecond):
		}
	})
	t.Run("no source", func(t *testing.T) {
		h := newFakeHost(t)
		src := newFakeClockSteps(0)
		src.err = errors.New("timerfd_create: function not implemented")
		inst := bootWithClock(t, h, "c4", src)
		t.Cleanup(func() { _ = inst.Shutdown(context.Background(), 5*time.Second) })
		if len(inst.Warnings) != 1 || !containsAll(inst.Warnings[0], `container "c4"`, "not implemented") {
			t.Errorf("warnings %q, want the source's error", inst.Warnings)
		}
		inst.FollowHostClock(t.Errorf) // nothing to follow
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
