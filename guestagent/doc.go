// Package guestagent is the guest side of initos-runtime: the static binary
// that is /init (PID 1) of the initrd.
//
// Boot mounts /proc, /sys, /dev, /dev/pts, /run and /tmp, reads the kernel
// command line of docs/contracts.md (ParseCmdline), loads the requested
// groups of /lib/modules/load.order, configures lo and, with xip=, eth0, and
// then runs one of three modes: agent (serve the agentapi ttrpc service on
// the virtio-serial port org.initos.agent and on AF_VSOCK port 1024),
// sidecar (mount the root disk, run the program after "-- " as process
// "init" and serve; power off when it exits) or switchroot (mount the root
// disk, switch_root to it and exec the program as PID 1).
//
// As PID 1 the agent reaps every orphan. One reaper owns wait4: children are
// started with syscall.ForkExec while the reaper's lock is held, so each exit
// status of a process the agent started reaches its waiters and every other
// one is reaped silently; os/exec's Cmd.Wait is never used.
//
// Processes (Service.CreateProcess) run through the process helper, a small
// program of its own in the initrd (/sbin/initos-exec, cmd/initos-exec,
// package procinit), started in the container's namespaces and cgroup. It
// reads its configuration from fd 3, pivots (or chroots) into the
// container's root filesystem, changes directory, sets rlimits, the
// session and terminal, capabilities, groups, gid, uid and umask and the
// seccomp filter, looks up args[0] in the process's PATH and reports
// "ready" on fd 5. It then waits on fd 4 for StartProcess and execs. Errors
// before the exec travel to the host as one line on fd 5, which is
// close-on-exec, so a successful exec closes it. It is not the agent's own
// binary re-executed because a Go program's start costs in proportion to
// what it links under TCG (docs/boot-budget.md).
//
// Output is read by one goroutine per stream into a bounded buffer: a full
// buffer stops the reading, so a process that writes faster than the host
// reads blocks (backpressure) rather than losing output.
//
// The VM is the isolation boundary; inside it each container also gets the
// spec's namespaces, cgroup, capabilities, seccomp filter, masked and
// read-only paths (docs/architecture.md).
package guestagent
