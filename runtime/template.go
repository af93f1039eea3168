package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// VM templates (config "templates": true; docs/templates.md): a VM whose
// shape allows it starts by restoring a saved VM of the same shape instead
// of booting. The template is booted and saved by the first start of its
// shape; its clones map its RAM copy-on-write.

// saver is a VM that can be saved as a template (both drivers).
type saver interface {
	Save(ctx context.Context) error
}

// templateFormat is hashed into every template key: change it when what a
// template holds changes for the same inputs.
const templateFormat = "initos template v2"

// retryFailedTemplate is how long a template whose build failed is not
// tried again.
const retryFailedTemplate = 10 * time.Minute

// keepTemplates is how many templates the templates directory keeps: a
// start that builds one removes the least recently used beyond it.
const keepTemplates = 4

// cloneable says why the driver's VMs cannot start as clones (nil: they
// can). Any VM shape can: a clone's devices are its template's and its
// kernel command line too, so what differs between containers reaches it
// after the restore. Under qemu its shares' directories and its disks'
// images are its own on its command line (the template's are empty; the
// driver gives a clone's disks their sizes, and attaches its virtiofs
// shares, after the restore). Under cloud-hypervisor the template has no
// disk, share or NIC, and the driver hot-adds the clone's after the
// restore. Either way its NIC gets its MAC, addresses and name server
// from ConfigureNetwork, as the late network mode's does.
func cloneable(driver string) error {
	if driver != "qemu" && driver != "cloud-hypervisor" {
		return fmt.Errorf("the %s driver does not restore templates", driver)
	}
	return nil
}

// waitHotAdded has the agent wait up to wait for each virtiofs share of a
// clone's Setup: those are attached after the restore (vmm.Config's
// RestoreFrom), and the guest learns their tags some time after.
func waitHotAdded(req *agentapi.SetupRequest, wait time.Duration) {
	for _, sh := range []*agentapi.Share{req.RootShare, req.Share} {
		if sh != nil && sh.Fstype == vmm.ShareVirtiofs {
			sh.WaitMillis = uint32(wait.Milliseconds())
		}
	}
}

// rootDiskSerial is the serial of a container's root disk (rootfs
// "disk"), by which a clone's agent finds it.
const rootDiskSerial = "initos-root"

// templateKey names the template of vcfg's shape: the format, the driver
// and accelerator, the VMM's binary, kernel and initrd (by stat: an
// upgrade changes them), memory, CPUs, the kernel command line and the
// shares' tags and options. Anything else that differs between containers
// must not be part of a clone's VM.
func templateKey(c Config, driver string, accel vmm.Accel, vcfg vmm.Config) (string, error) {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s\n", len(s), s) }
	field(templateFormat)
	field(driver)
	field(accel.Name)
	bin, err := exec.LookPath(vmmBinary(c, driver))
	if err != nil {
		return "", fmt.Errorf("finding %s: %w", driver, err)
	}
	for _, p := range []string{bin, vcfg.Kernel, vcfg.Initrd} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", fmt.Errorf("no stat of %q", p)
		}
		field(fmt.Sprintf("%s %d %d %d %d.%d", p, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec))
	}
	field(fmt.Sprintf("%d MiB %d cpus", vcfg.MemoryMiB, vcfg.CPUs))
	// The kernel options every driver adds to vcfg's (a runtime whose
	// agent is built the same, so its initrd too, may boot with others).
	field(vmm.GuestKernelArgs)
	field(vcfg.Cmdline)
	for _, s := range vcfg.Shares {
		field(fmt.Sprintf("%s %s %s %t", s.Tag, s.Mode, s.Cache, s.Xattr))
	}
	// The modules share is a device of the snapshot too.
	field("modules " + vcfg.Modules)
	for _, d := range vcfg.Disks {
		field(fmt.Sprintf("disk %s %t %t", d.Serial, d.ReadOnly, d.Slot))
	}
	field(fmt.Sprintf("%d nics", len(vcfg.NICs)))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// templateSnapshot returns the snapshot of vcfg's shape, booting and saving
// its template first when there is none. Concurrent starts of one shape
// build it once: the others wait on its lock.
func templateSnapshot(ctx context.Context, c Config, newVM newVMFunc, driver string, accel vmm.Accel, vcfg vmm.Config) (_ *vmm.Snapshot, built bool, err error) {
	key, err := templateKey(c, driver, accel, vcfg)
	if err != nil {
		return nil, false, fmt.Errorf("naming the template: %w", err)
	}
	root := c.templatesDir()
	dir := filepath.Join(root, key)
	snap := &vmm.Snapshot{RAM: filepath.Join(dir, "ram"), State: filepath.Join(dir, "state")}
	if snapshotExists(snap) {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // recently used: kept by pruning
		return snap, false, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating %q: %w", root, err)
	}
	unlock, err := lockWait(ctx, filepath.Join(root, key[:16]+".lock"), 20*time.Millisecond)
	if err != nil {
		return nil, false, fmt.Errorf("locking the template %s: %w", key[:16], err)
	}
	defer unlock()
	if snapshotExists(snap) { // built while this start waited
		return snap, false, nil
	}
	// A build that failed is not tried again by every start: each would
	// pay for it before its own boot.
	failed := filepath.Join(root, key[:16]+".failed")
	if fi, err := os.Stat(failed); err == nil && time.Since(fi.ModTime()) < retryFailedTemplate {
		why, _ := os.ReadFile(failed)
		return nil, false, fmt.Errorf("the template failed to build %s ago (retried after %s): %s",
			time.Since(fi.ModTime()).Round(time.Second), retryFailedTemplate, guestText(string(why), 512))
	}
	if err := buildTemplate(ctx, c, newVM, driver, vcfg, key, dir); err != nil {
		_ = os.WriteFile(failed, []byte(err.Error()), 0o600)
		return nil, false, err
	}
	_ = os.Remove(failed)
	pruneTemplates(root, key)
	return snap, true, nil
}

func snapshotExists(s *vmm.Snapshot) bool {
	for _, p := range []string{s.RAM, s.State} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// buildTemplate boots a VM of vcfg's shape in a build directory (its shares
// empty directories there, its disks empty files), waits for its agent, saves it and moves the
// directory to dir. Nothing is left of a failed build.
func buildTemplate(ctx context.Context, c Config, newVM newVMFunc, driver string, vcfg vmm.Config, key, dir string) (err error) {
	// Named by the key's prefix: the sockets' paths must fit sun_path.
	build := filepath.Join(filepath.Dir(dir), key[:16]+".build")
	if err := os.RemoveAll(build); err != nil {
		return fmt.Errorf("removing a stale template build: %w", err)
	}
	if err := os.Mkdir(build, 0o700); err != nil {
		return fmt.Errorf("creating the template build directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(build)
		}
	}()
	t := vcfg
	t.ID = "template-" + key[:12]
	// The sockets' directory, short: their paths must fit sun_path (the
	// driver's Validate says so when DataDir is too long).
	t.StateDir = filepath.Join(build, "s")
	t.ConsoleLog = filepath.Join(build, "console.log")
	t.Template = &vmm.Snapshot{RAM: filepath.Join(build, "ram"), State: filepath.Join(build, "state")}
	t.Netns = "" // no tap: the template's NIC has no backend
	t.NICs = slices.Clone(vcfg.NICs)
	for i := range t.NICs {
		t.NICs[i].Tap = "" // the clones' taps are theirs
	}
	t.Shares = slices.Clone(vcfg.Shares)
	for i := range t.Shares {
		t.Shares[i].Dir = filepath.Join(build, fmt.Sprintf("share%d", i))
	}
	for _, d := range append([]string{t.StateDir}, sharesDirs(t.Shares)...) {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("creating %q: %w", d, err)
		}
	}
	// Empty disks: the clones' images take their places.
	t.Disks = slices.Clone(vcfg.Disks)
	for i := range t.Disks {
		t.Disks[i].Path = filepath.Join(build, fmt.Sprintf("disk%d", i))
		if err := os.WriteFile(t.Disks[i].Path, nil, 0o600); err != nil {
			return fmt.Errorf("creating the template's disk %d: %w", i, err)
		}
	}
	vm, err := newVM(driver, t, c)
	if err != nil {
		return fmt.Errorf("configuring the template: %w", err)
	}
	s, ok := vm.(saver)
	if !ok {
		return fmt.Errorf("the %s driver cannot save a VM", driver)
	}
	if err := vm.Start(ctx); err != nil {
		return fmt.Errorf("starting the template: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if serr := vm.Stop(sctx); serr != nil && err == nil {
			err = fmt.Errorf("stopping the template: %w", serr)
		}
	}()
	bctx, cancel := context.WithTimeout(ctx, time.Duration(c.BootTimeout))
	defer cancel()
	// Ready by the console, not by a connection: a connection's state
	// (ttrpc's stream ids) would be saved with the template and refuse
	// every clone's first call.
	if err := waitAgentReady(bctx, vm, t.ConsoleLog); err != nil {
		return fmt.Errorf("booting the template: %w; last console output:\n%s", err, vmm.ConsoleTail(t.ConsoleLog, 20))
	}
	if err := s.Save(bctx); err != nil {
		return fmt.Errorf("saving the template: %w", err)
	}
	// Stopped before the move: the RAM file is final.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := vm.Stop(sctx); err != nil {
		return fmt.Errorf("stopping the template: %w", err)
	}
	_ = os.RemoveAll(dir) // a partial one (both files are checked before use)
	if err := os.Rename(build, dir); err != nil {
		return fmt.Errorf("installing the template: %w", err)
	}
	return nil
}

func sharesDirs(shares []vmm.Share) []string {
	var d []string
	for _, s := range shares {
		d = append(d, s.Dir)
	}
	return d
}

// agentReadyLines are what the agent prints on the console once it
// serves (the console's tty turns "\n" into "\r\n").
var agentReadyLines = [][]byte{[]byte("initos-agent: ready\r\n"), []byte("initos-agent: ready\n")}

// waitAgentReady waits until the console shows the agent serving, the VMM
// exits or ctx ends.
func waitAgentReady(ctx context.Context, vm VM, console string) error {
	exited := make(chan error, 1)
	go func() { exited <- vm.Wait() }()
	for {
		if b, err := os.ReadFile(console); err == nil {
			for _, l := range agentReadyLines {
				if bytes.Contains(b, l) {
					return nil
				}
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%w before its agent was ready: %v", ErrVMExited, err)
		case <-ctx.Done():
			return fmt.Errorf("the agent was not ready: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pruneTemplates removes the least recently used templates beyond
// keepTemplates, never keep's. A clone running from a removed one keeps
// its mapping of the file.
func pruneTemplates(root, keep string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	type tpl struct {
		name string
		used time.Time
	}
	var ts []tpl
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != sha256.Size*2 || e.Name() == keep {
			continue
		}
		if fi, err := e.Info(); err == nil {
			ts = append(ts, tpl{e.Name(), fi.ModTime()})
		}
	}
	slices.SortFunc(ts, func(a, b tpl) int { return b.used.Compare(a.used) })
	for i, t := range ts {
		if i >= keepTemplates-1 {
			_ = os.RemoveAll(filepath.Join(root, t.name))
			_ = os.Remove(filepath.Join(root, t.name[:16]+".lock"))
			_ = os.Remove(filepath.Join(root, t.name[:16]+".failed"))
		}
	}
}
