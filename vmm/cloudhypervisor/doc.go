// Package cloudhypervisor is the cloud-hypervisor driver of package vmm,
// written to cloud-hypervisor's documented CLI and REST API (docs/api.md,
// docs/vsock.md, docs/fs.md upstream). It needs KVM, so it cannot run on
// hosts where vmm.DetectAccel says TCG.
//
// The guest agent is reached over hybrid vsock: cloud-hypervisor's unix
// socket, on which the host writes "CONNECT <port>\n" and reads one
// "OK <host-port>\n" line before the stream is the guest's (DialHybridVsock).
// Shares are virtiofs only (cloud-hypervisor has no 9p), served by
// virtiofsd; guest memory is then shared=on.
//
// Files in Config.StateDir: api.sock, vsock.sock, virtiofs.sock (sockets,
// removed by Stop) and cloud-hypervisor.log, virtiofsd.log.
package cloudhypervisor
