package runtime

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os/exec"

	"github.com/initos-runtime/initos-runtime/vmm"
	"github.com/initos-runtime/initos-runtime/vmm/cloudhypervisor"
	"github.com/initos-runtime/initos-runtime/vmm/qemu"
)

// VM is what the runtime needs of a VMM driver: qemu and cloud-hypervisor
// both implement it.
type VM interface {
	// Start launches the VMM; it returns once the VMM runs, not once the
	// guest has booted.
	Start(ctx context.Context) error
	// DialAgent returns one stream connection to the guest agent.
	DialAgent(ctx context.Context) (net.Conn, error)
	// Stop ends the VMM (gracefully, then by force) and removes its sockets.
	Stop(ctx context.Context) error
	// Wait blocks until the VMM process has exited.
	Wait() error
	// Pid is the VMM process id.
	Pid() int
}

// newVMFunc builds a VM for a driver name; tests replace it with a fake.
type newVMFunc func(driver string, cfg vmm.Config, c Config) (VM, error)

// newVM is the production newVMFunc.
func newVM(driver string, cfg vmm.Config, c Config) (VM, error) {
	switch driver {
	case "qemu":
		return qemu.New(cfg, qemu.Options{Binary: c.QemuBinary, Virtiofsd: c.VirtiofsdBinary, VirtiofsdCache: c.CacheDir()})
	case "cloud-hypervisor":
		return cloudhypervisor.New(cfg, cloudhypervisor.Options{Binary: c.CloudHypervisorBinary, Virtiofsd: c.VirtiofsdBinary, VirtiofsdCache: c.CacheDir()})
	}
	return nil, fmt.Errorf("unknown vmm driver %q", driver)
}

// lookPath is exec.LookPath; tests replace it.
var lookPath = exec.LookPath

// chooseDriver resolves "auto": cloud-hypervisor needs KVM, so without
// usable KVM (as on PVM hosts) qemu with TCG is the only choice.
func chooseDriver(c Config, accel vmm.Accel) (string, error) {
	return chooseDriverWith(c, accel, lookPath)
}

// chooseDriverWith is chooseDriver with its PATH lookup given, so that
// Check decides with the same probe it reports.
func chooseDriverWith(c Config, accel vmm.Accel, lookPath func(string) (string, error)) (string, error) {
	switch c.VMM {
	case "qemu", "cloud-hypervisor":
		if c.VMM == "cloud-hypervisor" && accel.Name != "kvm" {
			return "", fmt.Errorf("vmm cloud-hypervisor needs KVM: %s", accel.Reason)
		}
		return c.VMM, nil
	}
	if _, err := lookPath(vmmBinary(c, "cloud-hypervisor")); err == nil && accel.Name == "kvm" {
		return "cloud-hypervisor", nil
	}
	q := vmmBinary(c, "qemu")
	if _, err := lookPath(q); err != nil {
		return "", fmt.Errorf("no usable vmm: %s not found and cloud-hypervisor unusable (%s)", q, accel.Reason)
	}
	return "qemu", nil
}

// vmmBinary is the executable the config names for a driver, or the
// driver's default, to find in PATH.
func vmmBinary(c Config, driver string) string {
	if driver == "cloud-hypervisor" {
		return cmp.Or(c.CloudHypervisorBinary, cloudhypervisor.DefaultBinary)
	}
	return cmp.Or(c.QemuBinary, qemu.DefaultBinary)
}

// moduleGroups lists the initrd module groups a driver's guest needs
// (docs/contracts.md): loading only those keeps boots short under TCG.
func moduleGroups(driver string, cfg vmm.Config) []string {
	if driver == "cloud-hypervisor" {
		return cloudhypervisor.ModuleGroups(&cfg)
	}
	return qemu.ModuleGroups(&cfg)
}
