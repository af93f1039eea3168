// Package qemu is the qemu driver of package vmm: a microvm machine
// (design §8) with virtio-mmio devices, the guest agent on a virtio-serial
// port (AgentPortName) reached through a unix socket, a QMP socket for
// pause, resume and quit, 9p or virtiofs (with virtiofsd) for the share,
// and TCG unless the host has a usable KVM (vmm.DetectAccel).
//
// Files in Config.StateDir: agent.sock, qmp.sock, virtiofs.sock (sockets,
// removed by Stop) and qemu.log, virtiofsd.log (the processes' output,
// kept for error messages).
package qemu
