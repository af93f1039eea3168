package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// procUsage reads a process's CPU time (utime+stime) in nanoseconds and its
// resident memory in bytes from /proc (of the caller's PID namespace).
func procUsage(pid int) (cpuNanos, rssBytes uint64, err error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, 0, err
	}
	// utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat times", pid)
	}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, 0, err
	}
	sf := strings.Fields(string(statm))
	if len(sf) < 2 {
		return 0, 0, fmt.Errorf("parsing /proc/%d/statm", pid)
	}
	pages, err := strconv.ParseUint(sf[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/statm: %w", pid, err)
	}
	return (ut + st) * (1e9 / clockTicks), pages * uint64(os.Getpagesize()), nil
}
