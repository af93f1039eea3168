// Package shim is initos-runtime's containerd shim v2 (task API v3):
// containerd starts containerd-shim-initos-v2 for the runtime name
// io.containerd.initos.v2 and drives each container's VM through it.
//
// The shim reuses the runtime package's VM and agent layer (Boot, guest
// processes, stdio pumping); it adds what containerd asks of a shim: the
// bootstrap (Manager), the task service with containerd's event order,
// stdio by fifo, binary:// and file:// URIs, rootfs from the snapshotter's
// mounts, and pods whose containers share one shim.
package shim
