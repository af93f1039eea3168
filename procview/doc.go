// Package procview shows a container's processes in its VM as a /proc on
// the host.
//
// Engines read the processes of a container in /proc of the mount
// namespace of the pid create reported: podman top and podman pod top run
// psgo there. Under runc that /proc is the container's own; under
// initos-runtime the pid is the monitor's, whose view (the container's
// rootfs, runtime/monitorview_linux.go) would otherwise hold a /proc of the
// monitor's PID namespace: the monitor, qemu and virtiofsd. So the view's
// /proc is a small read-only FUSE file system served by the monitor from
// the guest agent's process listing (ListProcesses with detail): a
// directory per process of the container, named by its pid in the
// container's PID namespace, with the stat, status and cmdline files the
// guest's kernel prints (pids rewritten to that namespace's, start times
// moved to the host's boot time), ns/pid, and the host's stat and uptime
// at the top, which ps-like tools read for the boot time.
//
// Render is the pure part (unit tested without root); Serve and Mount are
// the FUSE side (root-only tests mount it in a temporary directory).
package procview
