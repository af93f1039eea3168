// Package vmm holds what the VMM drivers (vmm/qemu, vmm/cloudhypervisor)
// share: the VM description (Config), host checks (DetectAccel, TSCKHz),
// the child-process handling every driver needs (StartProcess: own process
// group, SIGKILL when the parent dies, output captured to a log file), the
// VMM's life from start to cleanup (Supervisor), virtiofsd, and the guest
// console tail used in error messages.
//
// A driver never trusts the guest: everything read back from it (console
// output, handshake lines) is bounded and sanitised here.
package vmm
