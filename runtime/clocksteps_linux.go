package runtime

import (
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostClockSteps reports each step of the host's wall clock: a
// clock_settime, settimeofday or adjtimex ADJ_SETOFFSET (an NTP daemon's
// or an admin's step), and the host's resume from suspend, which
// timerfd_create(2) counts as one. It arms a timerfd on CLOCK_REALTIME
// with TFD_TIMER_CANCEL_ON_SET and an expiry that never comes; a read of
// it fails with ECANCELED after each such change (not after a set that
// leaves the clock where it was). The channel holds at
// most one pending step (steps close together are one resync); stop
// closes the timerfd and ends the reader.
func hostClockSteps() (steps <-chan struct{}, stop func(), err error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("creating a timerfd on the host's wall clock: %w", err)
	}
	never := unix.ItimerSpec{Value: unix.Timespec{Sec: math.MaxInt64}}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &never, nil); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("arming a timerfd on the host's wall clock: %w", err)
	}
	// Non-blocking, so that os.File polls it and Close ends a pending Read.
	f := os.NewFile(uintptr(fd), "timerfd")
	ch := make(chan struct{}, 1)
	go func() {
		var b [8]byte
		for {
			_, err := f.Read(b[:])
			if err != nil && !errors.Is(err, syscall.ECANCELED) {
				return // closed by stop
			}
			if err != nil {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}
