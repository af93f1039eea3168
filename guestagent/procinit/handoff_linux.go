package procinit

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The switch-root mode's handoff (guestagent/handoff_linux.go): PID 1
// execs the helper with the process's descriptors above the Go runtime's
// and names them in HandoffFdsEnv.
const (
	// HandoffFiles is how many descriptors a handoff carries: the
	// process's stdin, stdout and stderr and the helper's configuration,
	// start and status pipes, in the helper's order (0-5).
	HandoffFiles = 6
	// HandoffFdBase is the lowest descriptor PID 1 moves them to.
	HandoffFdBase = 64
	// HandoffFdsEnv names them for the helper PID 1 execs.
	HandoffFdsEnv = "INITOS_HANDOFF_FDS"
)

// HandoffFds are the helper's configuration, start and status
// descriptors when PID 1 exec'd it: it makes the stdio ones (the first
// three of HandoffFdsEnv) 0-2 at once, as a forked helper finds them; the
// others stay where PID 1 put them. ok is false for a forked helper.
func HandoffFds() (cfg, start, status int, ok bool, err error) {
	v := os.Getenv(HandoffFdsEnv)
	if v == "" {
		return 0, 0, 0, false, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) != HandoffFiles {
		return 0, 0, 0, false, fmt.Errorf("%s=%q: want %d descriptors", HandoffFdsEnv, v, HandoffFiles)
	}
	fds := make([]int, len(parts))
	for i, p := range parts {
		fd, err := strconv.Atoi(p)
		if err != nil || fd < HandoffFdBase {
			return 0, 0, 0, false, fmt.Errorf("%s=%q: %q is not a descriptor above %d", HandoffFdsEnv, v, p, HandoffFdBase)
		}
		fds[i] = fd
	}
	// 0-2 are the console here, never one of the Go runtime's.
	if err := takeStdio(fds); err != nil {
		return 0, 0, 0, false, err
	}
	return fds[3], fds[4], fds[5], true, nil
}

// takeStdio makes fds' first three the helper's 0-2, as a forked helper
// finds them (flags 0: they reach the process), and closes the originals.
func takeStdio(fds []int) error {
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fds[i], i, 0); err != nil {
			return fmt.Errorf("making fd %d the process's: %w", i, err)
		}
		_ = unix.Close(fds[i])
	}
	return nil
}
