package cloudhypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// A cloud-hypervisor snapshot (docs/snapshot_restore.md) is three files
// in one directory. As a vmm.Snapshot: memory-ranges is RAM, state.json
// is State, and config.json is snapshotConfig beside State (args.go).
//
// A template boots without the container's devices (buildArgs), so its
// snapshot holds only what cloud-hypervisor can give each clone its own
// of by rewriting config.json: the serial file and the vsock socket. A
// clone's disks, virtiofs shares and NIC are hot-added once it runs
// (vm.add-disk, vm.add-fs, vm.add-net): a restored device keeps its
// template's state (a disk's capacity, a vhost-user backend's session),
// which docs/snapshot_restore.md says nothing about carrying to another
// file or backend.

// Save writes the VM as the snapshot its config's Template names, then
// shuts cloud-hypervisor down: "PUT vm.pause", then "PUT vm.snapshot"
// into a directory beside Template.State, whose files are moved to their
// places, State last (a snapshot is complete once its State exists). On
// failure no file of the snapshot is left; the VM is left paused, for the
// caller to stop.
func (v *VM) Save(ctx context.Context) error {
	tpl := v.cfg.Template
	if tpl == nil {
		return fmt.Errorf("vm %q: saving: %w: the vm is not a template", v.cfg.ID, vmm.ErrInvalidConfig)
	}
	dir := tpl.State + ".d"
	err := v.control(ctx, "saving to "+fmt.Sprintf("%q", dir), func(ctx context.Context) error {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return err
		}
		// "Once paused, the VM can be safely snapshot into the specified
		// directory" (docs/snapshot_restore.md).
		if err := v.api.pause(ctx); err != nil {
			return err
		}
		if err := v.api.snapshot(ctx, dir); err != nil {
			return err
		}
		for _, m := range []struct{ from, to string }{
			{snapConfig, snapshotConfig(tpl)}, {snapMemory, tpl.RAM}, {snapState, tpl.State},
		} {
			if err := os.Rename(filepath.Join(dir, m.from), m.to); err != nil {
				return err
			}
		}
		return nil
	})
	_ = os.RemoveAll(dir)
	if err != nil {
		for _, f := range []string{tpl.State, tpl.RAM, snapshotConfig(tpl)} {
			_ = os.Remove(f)
		}
		return err
	}
	// Saved: the template's VMM has nothing left to do.
	if err := v.Stop(ctx); err != nil {
		return fmt.Errorf("vm %q: saving to %q: shutting down: %w", v.cfg.ID, tpl.State, err)
	}
	return nil
}

// writeRestoreDir makes the directory a clone is restored from
// (restoreDir in its state dir): the template's config.json with the
// clone's serial file and vsock socket, and links to the template's
// state.json and memory-ranges. config.json "is stored in a human readable
// format so that it could be modified between the snapshot and restore
// phases" (docs/snapshot_restore.md). A config holding a disk, share or
// NIC is refused (ErrBadSnapshot): those would be the template's.
func writeRestoreDir(cfg *vmm.Config) error {
	snap := cfg.RestoreFrom
	b, err := os.ReadFile(snapshotConfig(snap))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadSnapshot, snapshotConfig(snap), err)
	}
	for _, dev := range []string{"disks", "fs", "net"} {
		if l, _ := c[dev].([]any); len(l) > 0 {
			return fmt.Errorf("%w: %q has %s of its template's", ErrBadSnapshot, snapshotConfig(snap), dev)
		}
	}
	serial, _ := c["serial"].(map[string]any)
	vsock, _ := c["vsock"].(map[string]any)
	if serial == nil || vsock == nil {
		return fmt.Errorf("%w: %q has no serial port or no vsock device", ErrBadSnapshot, snapshotConfig(snap))
	}
	serial["file"] = cfg.ConsoleLog
	vsock["socket"] = cfg.SocketPath(vsockSocket)
	if b, err = json.Marshal(c); err != nil {
		return err
	}
	dir := cfg.SocketPath(restoreDir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	err = os.WriteFile(filepath.Join(dir, snapConfig), b, 0o600)
	for _, l := range []struct{ target, name string }{{snap.State, snapState}, {snap.RAM, snapMemory}} {
		if err == nil {
			err = os.Symlink(l.target, filepath.Join(dir, l.name))
		}
	}
	if err != nil {
		_ = os.RemoveAll(dir)
	}
	return err
}

// restore is a clone's readiness step (Supervisor.Ready, polled).
// cloud-hypervisor answers vm.info only once --restore made the VM, which
// is then "Paused" ("The new virtual machine is restored in a paused
// state"): restore resumes it ("one must explicitly `resume` the VM"),
// then hot-adds the clone's own devices. Each step is done once; a step
// the VMM refuses ends the start (vmm.ErrNotReadyable).
func (v *VM) restore(ctx context.Context) error {
	if !v.resumed {
		st, err := v.api.vmState(ctx)
		if err != nil {
			return err // not restored yet
		}
		switch st {
		case "Paused":
			if err := v.api.resume(ctx); err != nil {
				return v.notReadyable("resuming the restored vm", err)
			}
		case "Running":
		case "Created":
			return fmt.Errorf("vm state %q", st)
		default:
			return v.notReadyable("restoring", fmt.Errorf("vm state %q", st))
		}
		v.resumed = true
	}
	return v.attachOwn(ctx)
}

// attachOwn hot-adds a restored clone's own devices, in its config's
// order: its disks (the agent finds its root by serial and size), its
// virtiofs shares on their virtiofsd's sockets (the agent waits for their
// tags), and its NIC on its tap (ConfigureNetwork waits for eth0).
func (v *VM) attachOwn(ctx context.Context) error {
	for ; v.added < len(v.cfg.Disks); v.added++ {
		i, d := v.added, v.cfg.Disks[v.added]
		dc := diskConfig{Path: d.Path, ID: fmt.Sprintf("disk%d", i), Serial: d.Serial, Readonly: d.ReadOnly}
		if err := v.api.hotplug(ctx, dc); err != nil {
			return v.notReadyable(fmt.Sprintf("adding disk %d (%q)", i, d.Path), err)
		}
	}
	for ; v.added < len(v.cfg.Disks)+len(v.cfg.Shares); v.added++ {
		i := v.added - len(v.cfg.Disks)
		s := v.cfg.Shares[i]
		fc := fsConfig{Tag: s.Tag, Socket: v.cfg.SocketPath(vmm.VirtiofsSocket(i)), NumQueues: 1, QueueSize: 1024, ID: fmt.Sprintf("fs%d", i)}
		if err := v.api.hotplug(ctx, fc); err != nil {
			return v.notReadyable(fmt.Sprintf("adding share %q on %q", s.Tag, fc.Socket), err)
		}
	}
	for ; v.added < len(v.cfg.Disks)+len(v.cfg.Shares)+len(v.cfg.NICs); v.added++ {
		i := v.added - len(v.cfg.Disks) - len(v.cfg.Shares)
		n := v.cfg.NICs[i]
		if err := v.api.hotplug(ctx, netConfig{Tap: n.Tap, MAC: n.MAC, ID: fmt.Sprintf("net%d", i)}); err != nil {
			return v.notReadyable(fmt.Sprintf("adding nic %d (tap %q)", i, n.Tap), err)
		}
	}
	return nil
}

// notReadyable is err of a restore step the VMM refused, naming the step
// and the snapshot; a request that timed out may be polled again.
func (v *VM) notReadyable(what string, err error) error {
	err = fmt.Errorf("restoring %q: %s: %w", v.cfg.RestoreFrom.State, what, err)
	if errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", vmm.ErrNotReadyable, err)
}
