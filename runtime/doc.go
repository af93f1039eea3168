// Package runtime runs one OCI container in one microVM: it turns a bundle
// into a disk image, picks the kernel and a cached initrd, starts the VMM
// through a small VM interface, waits for the guest agent, and drives the
// container's process over the agentapi protocol (stdio, signals, exit
// status). The CLI verbs in cmd/initos-runtime and the containerd shim are
// thin layers over it.
package runtime
