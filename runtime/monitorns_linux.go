package runtime

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/network"
)

// The monitor runs in a PID and mount namespace of its own, with its own
// /proc: what joins the namespaces of the container's pid (podman top's
// psgo, nsenter) sees the monitor and its VMM, not the host's processes;
// the share's bind mounts live and die with that namespace; and ending the
// monitor (PID 1 there) ends everything it started.
const monitorCloneFlags = syscall.CLONE_NEWPID | syscall.CLONE_NEWNS

// monitorNetnsEnv tells the monitor whether create gave it a network
// namespace of its own ("own") or not ("inherited"). Create always sets
// it, so a value in the caller's environment never reaches the monitor.
const monitorNetnsEnv = "INITOS_MONITOR_NETNS"

// ownNetnsPath is the monitor's network namespace as any of its threads
// sees it (the thread that joins it is already there).
const ownNetnsPath = "/proc/self/ns/net"

// wantsOwnNetns tells whether the monitor of a container with spec s must
// have a network namespace of its own: the spec asks for a new one and the
// host is not in the seed's bridge mode (whose taps must be on the host's
// bridge, so the monitor stays in the host's namespace there).
func wantsOwnNetns(c Config, s *specs.Spec) bool {
	path, ok := NetnsPath(s)
	return ok && path == "" && !bridgeExists(c.Bridge)
}

// prepareMonitor sets the monitor command's namespaces for spec s: its own
// PID and mount namespaces always, and its own network namespace when
// wantsOwnNetns, so that /proc/<monitor pid>/ns/net, which create reports
// as the container's pid, is a new, empty namespace as with runc; engines
// such as buildah configure it between create and start (the late network
// mode, see lateNetwork).
func prepareMonitor(cmd *exec.Cmd, c Config, s *specs.Spec) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= monitorCloneFlags
	netns := "inherited"
	if wantsOwnNetns(c, s) {
		// config-linux.md namespaces: "If a path is not specified, the
		// runtime MUST create a new container namespace of the given
		// type." The VMM (the container, from the host's side) runs in
		// the monitor's.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
		netns = "own"
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, monitorNetnsEnv+"="+netns)
}

// hostIdentity is the monitor's pid and start time as the host sees them
// (what state.json and conmon need), read before /proc is remounted, and
// whether it has a network namespace of its own.
type hostIdentity struct {
	pid   int
	start uint64
	// ownNetns: create cloned the monitor with CLONE_NEWNET
	// (prepareMonitor); its VM gets the late network's NIC.
	ownNetns bool
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
	netns := os.Getenv(monitorNetnsEnv)
	os.Unsetenv(monitorNetnsEnv) // not for the VMM or hooks
	if os.Getpid() != 1 {
		return id, nil
	}
	if netns == "own" {
		if err := checkOwnNetns(); err != nil {
			return id, err
		}
		id.ownNetns = true
		if err := network.LoopbackUp(ownNetnsPath); err != nil {
			return id, fmt.Errorf("setting up the monitor's network namespace: %w", err)
		}
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

// checkOwnNetns refuses to take the monitor's network namespace for its
// own when it is the host's (that of the host's init, seen through the
// host's /proc before the monitor mounts its own): taps and redirects must
// never land in the host's namespace. When the host's init cannot be
// inspected there is nothing to compare with.
func checkOwnNetns() error {
	self, err := os.Readlink(ownNetnsPath)
	if err != nil {
		return fmt.Errorf("reading the monitor's network namespace: %w", err)
	}
	if host, err := os.Readlink("/proc/1/ns/net"); err == nil && host == self {
		return fmt.Errorf("the monitor should have a network namespace of its own but is in the host's (%s)", self)
	}
	return nil
}
