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
// VM templates (docs/snapshot_restore.md upstream): a template boots
// without the container's disks, shares and NICs, and Save pauses it,
// snapshots it and shuts it down; a clone is restored (--restore) from a
// directory of its own whose config.json gives it its serial file and
// vsock socket, is resumed, and gets its devices by hot-add. Tested only
// against a fake cloud-hypervisor: no real one runs here.
//
// Files in Config.StateDir: api.sock, vsock.sock, virtiofs<i>.sock
// (sockets, removed by Stop), cloud-hypervisor.log, virtiofsd<i>.log, and
// a clone's restore directory while Start restores it.
package cloudhypervisor
