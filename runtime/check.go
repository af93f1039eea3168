package runtime

import (
	"fmt"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/initrd"
	"github.com/initos-runtime/initos-runtime/kernels"
	"github.com/initos-runtime/initos-runtime/procview"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// CheckResult is one line of `initos-runtime check`.
type CheckResult struct {
	Name string
	OK   bool
	// Required: without it no container can run on this host.
	Required bool
	Detail   string
}

// checkDeps are Check's probes, injectable for tests.
type checkDeps struct {
	detectAccel func() vmm.Accel
	lookPath    func(string) (string, error)
	findKernel  func(root string) (*initrd.Kernel, error)
	findAgent   func(Config) (string, error)
	// findVirtiofsd is vmm.FindVirtiofsd.
	findVirtiofsd func(explicit string) (string, error)
	// openFuse opens and closes a FUSE connection (procview.Open).
	openFuse func() error
	// hugePages says whether shared guest RAM in a directory gets huge
	// pages (hugeRAMHost.hugePageState).
	hugePages func(dir string) (string, error)
}

// Check reports, in plain words, what this host has and lacks to run
// containers: usable KVM, the VMM binaries, virtiofsd, mkfs.btrfs, how the
// rootfs reaches the guest, the guest kernel and the agent for the initrd.
// ok is false when no container can run.
func Check(c Config) (results []CheckResult, ok bool) {
	return check(c, checkDeps{detectAccel: vmm.DetectAccel, lookPath: exec.LookPath, findKernel: func(root string) (*initrd.Kernel, error) { return kernels.Open(root).Find("") },
		findAgent: findAgent, findVirtiofsd: vmm.FindVirtiofsd, openFuse: openFuse, hugePages: realHugeRAM().hugePageState})
}

// openFuse checks that a FUSE connection can be opened.
func openFuse() error {
	fd, err := procview.Open()
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

func check(c Config, d checkDeps) ([]CheckResult, bool) {
	var rs []CheckResult
	ok := true
	add := func(name string, good, required bool, detail string) {
		rs = append(rs, CheckResult{Name: name, OK: good, Required: required, Detail: detail})
		if required && !good {
			ok = false
		}
	}
	accel := d.detectAccel()
	add("kvm", accel.Name == "kvm", false, accel.Reason)

	q := c.QemuBinary
	if q == "" {
		q = "qemu-system-x86_64"
	}
	qp, qerr := d.lookPath(q)
	chv := c.CloudHypervisorBinary
	if chv == "" {
		chv = "cloud-hypervisor"
	}
	cp, cerr := d.lookPath(chv)
	add("qemu", qerr == nil, false, found(q, qp, qerr))
	add("cloud-hypervisor", cerr == nil, false, found(chv, cp, cerr)+kvmNote(cerr == nil, accel))
	driver, derr := chooseDriverWith(c, accel, d.lookPath)
	if derr != nil {
		add("vmm", false, true, derr.Error())
	} else {
		add("vmm", true, true, fmt.Sprintf("containers will run under %s (%s)", driver, accelWords(driver, accel)))
	}

	vp, verr := d.findVirtiofsd(c.VirtiofsdBinary)
	add("virtiofsd", verr == nil, false, found("virtiofsd", vp, verr)+" (shares the rootfs and volumes with the VM; Debian package qemu-system-common)")
	disk := c.Rootfs == RootfsDisk
	mp, merr := d.lookPath("mkfs.btrfs")
	add("mkfs.btrfs", merr == nil, disk, found("mkfs.btrfs", mp, merr)+" (builds the disk images of config rootfs \"disk\"; Debian package btrfs-progs)")
	// The shares' filesystem, found once: the rootfs, huge pages and
	// templates lines all depend on it.
	fs, fsErr := "", derr
	if derr == nil {
		fs, fsErr = shareFSWith(c, driver, d.findVirtiofsd)
	}
	switch {
	case disk:
		add("rootfs", merr == nil, true, "copied into a btrfs disk per container (config rootfs \"disk\"): "+
			"image reads at block-device speed, but the container's writes stay in its VM and are lost when it is deleted")
	case derr != nil:
		add("rootfs", false, true, "cannot share the rootfs with the VM: no usable VMM")
	default:
		switch {
		case fsErr != nil:
			add("rootfs", false, true, "cannot share the rootfs with the VM: "+fsErr.Error())
		case fs == vmm.Share9p && verr != nil:
			add("rootfs", true, true, "shared with the VM over 9p (no virtiofsd: slower; install qemu-system-common for virtiofs): "+
				"the container's writes land in the engine's storage, as under runc")
		default:
			add("rootfs", true, true, "shared with the VM over "+fs+": the container's writes land in the engine's storage, as under runc")
		}
	}

	if err := d.openFuse(); err != nil {
		add("fuse", false, false, fmt.Sprintf("%v: podman top of a container lists its VM's host processes (qemu, virtiofsd) instead of the container's", err))
	} else {
		add("fuse", true, false, "/dev/fuse: podman top and pod top list the container's processes in its VM")
	}

	hugeOK, hugeWords := hugePagesLine(c, driver, derr, fs, d)
	add("huge pages", hugeOK, false, hugeWords)
	tplOK, tplWords := templatesServe(c, driver, derr, fs, fsErr)
	add("templates", tplOK, false, tplWords)
	add("boot slots", true, false, bootSlotsWords(c, accel))

	if k, err := d.findKernel(c.KernelRoot); err != nil {
		add("kernel", false, true, fmt.Sprintf("no guest kernel under %s: %v (scripts/setup.sh fetches Debian's linux-image-amd64)", c.KernelRoot, err))
	} else {
		add("kernel", true, true, fmt.Sprintf("Linux %s from %s (the default: initos-runtime kernel list shows the others)", k.Release, k.Vmlinuz))
	}
	if a, err := d.findAgent(c); err != nil {
		add("agent", false, true, err.Error())
	} else {
		add("agent", true, true, "guest agent for the initrd: "+a+", its process helper "+initrd.HelperName+" beside it (initrds are built from it on first use and cached in "+c.CacheDir()+")")
	}
	return rs, ok
}

// hugePagesLine says whether and where a booted VM's RAM shared with
// virtiofsd is on huge pages (withHugeRAM), or why that does not apply: only
// qemu maps its RAM from a file the runtime chooses, and only virtiofs
// needs the RAM shared. fs is the shares' filesystem ("" when unknown).
func hugePagesLine(c Config, driver string, derr error, fs string, d checkDeps) (ok bool, words string) {
	const what = "a booted VM's RAM shared with virtiofsd (qemu) "
	const memfd = "is a memfd on the host's small pages: a cold boot 200-300 ms slower under TCG"
	if derr != nil {
		return false, "not known: no usable VMM"
	}
	if driver != "qemu" {
		return true, "not used: " + driver + " maps the VM's RAM itself"
	}
	if fs == vmm.Share9p {
		return true, "not needed: the shares are 9p, served by qemu itself, so a booted VM's RAM is qemu's own anonymous memory " +
			"(on huge pages as the host's transparent huge pages allow)"
	}
	if c.NoHugePages {
		return false, what + memfd + " (config noHugePages)"
	}
	state, err := d.hugePages(c.RAMDir)
	if err != nil {
		return false, fmt.Sprintf("%v: %s%s", err, what, memfd)
	}
	return true, what + "is " + state
}

// bootSlotsWords says how many VMs may boot at once (bootslots.go).
func bootSlotsWords(c Config, accel vmm.Accel) string {
	n := bootSlots(c, accel)
	switch {
	case n > 0 && c.BootConcurrency > 0:
		return fmt.Sprintf("at most %d VMs boot and set up at once, the others wait their turn (config bootConcurrency; slots in %s)", n, c.bootSlotsDir())
	case n > 0:
		return fmt.Sprintf("at most %d VMs boot and set up at once, one per CPU of the host: under TCG a boot is the host's CPU work (config bootConcurrency changes it; slots in %s)", n, c.bootSlotsDir())
	case c.BootConcurrency < 0:
		return "no limit: every VM boots at once (config bootConcurrency -1)"
	}
	return "no limit: every VM boots at once (with KVM a boot waits on its guest, not on the host's CPUs; config bootConcurrency sets one)"
}

// templatesServe says whether VM templates are on and serve, and, when they
// are on but cannot serve, why; fs and fsErr are the shares' filesystem
// (shareFSWith).
func templatesServe(c Config, driver string, derr error, fs string, fsErr error) (bool, string) {
	if !c.Templates {
		return false, "off: every container boots its VM (config \"templates\": true starts containers by restoring a saved VM)"
	}
	switch {
	case derr != nil:
		return false, "on, but there is no usable VMM"
	case cloneable(driver) != nil:
		return false, "on, but " + cloneable(driver).Error() + ": containers boot"
	}
	if fsErr != nil {
		return false, "on, but the shares have no filesystem: " + fsErr.Error()
	}
	if driver == "cloud-hypervisor" {
		return true, "on: containers start by restoring a saved VM of their shape (cloud-hypervisor: each clone's memory is a copy of the template's, " +
			"and its disks, virtiofs shares and NIC are hot-added after the restore; written to cloud-hypervisor's documented API, " +
			"tested only against a fake of it; the network configured after the restore); templates in " + c.templatesDir()
	}
	memory := "9p shares: idle clones share the template's memory"
	if fs == vmm.ShareVirtiofs {
		memory = "virtiofs shares, hot-added after the restore: each clone's memory is a copy of the template's (shareFS \"9p\" lets idle clones share it)"
	}
	return true, "on: containers start by restoring a saved VM of their shape (" + memory + "; the network configured after the restore); templates in " + c.templatesDir()
}

func found(name, path string, err error) string {
	if err != nil {
		return name + " not found in PATH"
	}
	return path
}

func kvmNote(present bool, a vmm.Accel) string {
	if present && a.Name != "kvm" {
		return "; unusable without KVM"
	}
	return ""
}

func accelWords(driver string, a vmm.Accel) string {
	if a.Name == "kvm" {
		return "KVM"
	}
	return "TCG software emulation, boots take seconds: " + strings.TrimSpace(a.Reason)
}
