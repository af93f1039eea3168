package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stepHostClockByZero steps the host's wall clock 1 µs forward and back
// again (adjtimex ADJ_SETOFFSET twice; offsets are exact, so the clock
// ends where it was): what a timerfd with TFD_TIMER_CANCEL_ON_SET sees of
// an NTP daemon's step, without moving the host's time.
func stepHostClockByZero(t testing.TB) {
	t.Helper()
	for _, tv := range []unix.Timeval{{Sec: 0, Usec: 1}, {Sec: -1, Usec: 999999}} {
		if _, err := unix.Adjtimex(&unix.Timex{Modes: unix.ADJ_SETOFFSET, Time: tv}); err != nil {
			t.Fatalf("stepping the host's clock (adjtimex ADJ_SETOFFSET %d.%06d): %v", tv.Sec, tv.Usec, err)
		}
	}
}

// testPodmanClockStep: a VM's clock follows a step of the host's
// (checkClockFollowsHost). Under runc a container's date -s would set the
// host's clock: the test is initos-runtime's only.
func testPodmanClockStep(t *testing.T, p *podman) {
	if !p.initos {
		t.Skip("under runc a container's date -s sets the host's clock")
	}
	const name = "initos-pm-clock"
	p.removeLater(t, name)
	p.ok(t, "run", "-d", "--name", name, "--network", "none", "--cap-add", "SYS_TIME", podmanImage, "sleep", "3600")
	checkClockFollowsHost(t, func(args ...string) string { return p.ok(t, append([]string{"exec", name}, args...)...) })
	p.ok(t, "rm", "--force", "--time", "0", name)
}

// checkClockFollowsHost: a container with CAP_SYS_TIME (in its own VM,
// date -s sets that VM's clock alone) sets its clock an hour back through
// exec; after a step of the host's clock the guest's is the host's again.
func checkClockFollowsHost(t *testing.T, exec func(args ...string) string) {
	t.Helper()
	skew := func() time.Duration {
		t.Helper()
		out := strings.TrimSpace(exec("date", "+%s"))
		guest, err := strconv.ParseInt(out, 10, 64)
		if err != nil {
			t.Fatalf("date +%%s in the container: %q", out)
		}
		return time.Since(time.Unix(guest, 0))
	}
	exec("date", "-s", fmt.Sprintf("@%d", time.Now().Add(-time.Hour).Unix()))
	if d := skew(); d < 59*time.Minute {
		t.Fatalf("the guest's clock is %v behind the host's after its date -s an hour back, want about an hour", d)
	}
	stepHostClockByZero(t)
	var d time.Duration
	ok, _ := pollUntil(30*time.Second, func() (bool, string) {
		d = skew()
		return d.Abs() < 3*time.Second, ""
	})
	if !ok {
		t.Errorf("the guest's clock is %v behind the host's 30 s after a step of the host's, want the host's", d)
	}
}
