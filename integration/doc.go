// Package integration boots real VMs through the initos-runtime CLI (qemu;
// TCG where KVM cannot run a stock kernel). The tests need root, qemu,
// mkfs.btrfs and a guest kernel (scripts/setup.sh); they skip without them
// unless INITOS_INTEGRATION=1, which turns a missing prerequisite into a
// failure (CI sets it). All VMs of one run share one kernel and initrd.
package integration
