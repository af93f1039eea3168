package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The monitor runs in a PID and mount namespace of its own, with its own
// /proc: what joins the namespaces of the container's pid (podman top's
// psgo, nsenter) sees the monitor and its VMM, not the host's processes;
// the share's bind mounts live and die with that namespace; and ending the
// monitor (PID 1 there) ends everything it started.
const monitorCloneFlags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS

// hostIdentity is the monitor's pid and start time as the host sees them
// (what state.json and conmon need), read before /proc is remounted.
type hostIdentity struct {
	pid   int
	start uint64
}

// enterMonitorNamespaces finishes the namespace setup in the monitor: it
// records its host pid, makes its mounts private and mounts a /proc of its
// PID namespace. Without a new PID namespace (not started by create) it
// only records the identity.
func enterMonitorNamespaces() (hostIdentity, error) {
	id := hostIdentity{pid: os.Getpid()}
	if id.pid == 1 {
		hp, err := hostPid()
		if err != nil {
			return id, err
		}
		id.pid = hp
	}
	start, err := processStartTime(id.pid)
	if err != nil {
		return id, fmt.Errorf("reading the monitor's start time: %w", err)
	}
	id.start = start
	if os.Getpid() != 1 {
		return id, nil
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return id, fmt.Errorf("making the monitor's mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return id, fmt.Errorf("mounting the monitor's /proc: %w", err)
	}
	return id, nil
}

// hostPid reads the outermost pid from /proc/self/status's NSpid line.
func hostPid() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.Atoi(fields[0])
		}
	}
	return 0, fmt.Errorf("no NSpid in /proc/self/status")
}
