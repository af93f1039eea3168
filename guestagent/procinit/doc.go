// Package procinit is the process helper: the program the guest agent
// starts for each container process (cmd/initos-exec, /sbin/initos-exec in
// the initrd) in the container's namespaces and cgroup. It reads a Config
// from fd 3 (in the binary encoding of config.go, which decodes without
// reflection; the agent has resolved the capability and rlimit names,
// ProcessOf), prepares the process in runc init's order (hostname,
// sysctls, /proc and its masks, the root, cwd, HOME, rlimits, session and
// terminal, seccomp, capabilities, groups and ids, no_new_privs), says
// "ready" on fd 5, waits for one byte on fd 4 and execs; an error before
// the exec is one "error <text>" line on fd 5.
//
// It is a package and a program of its own, apart from the agent, because
// under TCG a Go program's start grows with what it links: the agent's
// binary (ttrpc, protobuf, netlink, the module decoders) took about twice
// as long to start as this one does (docs/boot-budget.md). So it imports
// nothing beyond the runtime-spec types and x/sys/unix, and the agent
// imports it for the Config and the helpers both sides use (ScopedJoin,
// MaskPaths, WriteSysctls, LookPath, ProcessOf, the capability names,
// RlimitResources).
package procinit
