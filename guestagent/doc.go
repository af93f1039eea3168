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
// Processes (Service.CreateProcess) run through a helper: the agent
// re-executes itself with argv[0] "initos-exec". The helper reads its
// configuration from fd 3, chroots into the container's root filesystem,
// changes directory, sets rlimits, groups, gid, uid and umask, starts a new
// session (taking the pty as its controlling terminal), looks up args[0] in
// the process's PATH and reports "ready" on fd 5. It then waits on fd 4 for
// StartProcess and execs. Errors before the exec travel to the host as one
// line on fd 5, which is close-on-exec, so a successful exec closes it.
//
// Output is read by one goroutine per stream into a bounded buffer: a full
// buffer stops the reading, so a process that writes faster than the host
// reads blocks (backpressure) rather than losing output.
//
// Processes share the guest's namespaces and are confined by chroot only:
// the VM is the isolation boundary. Not implemented yet: bind mounts of host
// paths (they need the shared directory), capabilities, seccomp, cgroup
// resources, /dev/console for terminals, and writing the container's
// resolv.conf from xip=.
package guestagent
