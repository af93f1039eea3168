package runtime

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stepHostClockByZero steps the host's wall clock 1 µs forward and back
// again (adjtimex ADJ_SETOFFSET twice: offsets are exact, so the clock ends
// where it was): two steps to timerfds, which ignore a step that changes
// nothing. The kernel's NTP state is cleared, as by any step (a running NTP
// daemon sets it again).
func stepHostClockByZero() error {
	for _, tv := range []unix.Timeval{{Sec: 0, Usec: 1}, {Sec: -1, Usec: 999999}} {
		if _, err := unix.Adjtimex(&unix.Timex{Modes: unix.ADJ_SETOFFSET, Time: tv}); err != nil {
			return fmt.Errorf("adjtimex ADJ_SETOFFSET %d.%06d: %w", tv.Sec, tv.Usec, err)
		}
	}
	return nil
}

// TestHostClockSteps: the timerfd reports a step of the host's clock, and
// nothing before it; stop ends the reader.
func TestHostClockSteps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_TIME) to step the host's clock by zero")
	}
	steps, stop, err := hostClockSteps()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case <-steps:
		t.Fatal("a step reported before any")
	case <-time.After(50 * time.Millisecond):
	}
	// Each step is reported: the timerfd needs no re-arming.
	for i := 1; i <= 2; i++ {
		if err := stepHostClockByZero(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-steps:
		case <-time.After(5 * time.Second):
			t.Fatalf("step %d of the host's clock not reported", i)
		}
		// Its second half (back by 1 µs) may have come as a step of its
		// own: the next one must be new.
		time.Sleep(50 * time.Millisecond)
		select {
		case <-steps:
		default:
		}
	}
}
