package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// migratePoll is how often a save or a restore asks qemu how far it is.
const migratePoll = 5 * time.Millisecond

// ignoreShared is the migration capability that leaves shared RAM out of
// the stream: the template's RAM file is the snapshot's RAM, and a clone
// maps that file instead of receiving its pages.
var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// shellQuote quotes s for /bin/sh, which runs qemu's exec: migration URIs.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Save writes the VM as the snapshot its config's Template names: the
// guest's CPUs are stopped (they stay stopped; the caller stops the VM),
// and the device and CPU state is written to Template.State, replacing it
// only once complete. The RAM is already Template.RAM.
func (v *VM) Save(ctx context.Context) error {
	if v.cfg.Template == nil {
		return fmt.Errorf("vm %q: saving: %w: the vm is not a template", v.cfg.ID, vmm.ErrInvalidConfig)
	}
	p, err := v.sup.Running()
	if err != nil {
		return err
	}
	if p.Exited() {
		return v.sup.ExitedError(p)
	}
	state := v.cfg.Template.State
	tmp := state + ".tmp"
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	q, err := qmpDial(ctx, v.cfg.SocketPath(qmpSocket))
	if err != nil {
		return fmt.Errorf("vm %q: saving: connecting to qmp: %w", v.cfg.ID, err)
	}
	defer q.Close()
	for _, c := range []struct {
		command string
		args    any
	}{
		{"stop", nil},
		{"migrate-set-capabilities", ignoreShared},
		{"migrate", map[string]any{"uri": "exec:cat > " + shellQuote(tmp)}},
	} {
		if _, err := q.executeArgs(c.command, c.args); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("vm %q: saving to %q: %w", v.cfg.ID, state, err)
		}
	}
	if err := waitMigration(ctx, q); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("vm %q: saving to %q: %w", v.cfg.ID, state, err)
	}
	if err := os.Rename(tmp, state); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("vm %q: saving: %w", v.cfg.ID, err)
	}
	return nil
}

// waitMigration polls query-migrate until the migration completed, and
// fails with qemu's reason when it failed or was cancelled.
func waitMigration(ctx context.Context, q *qmpConn) error {
	for {
		ret, err := q.execute("query-migrate")
		if err != nil {
			return err
		}
		var m struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(ret, &m); err != nil {
			return fmt.Errorf("%w: query-migrate: %v", vmm.ErrVMMRequest, err)
		}
		switch m.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("%w: migration %s: %s", vmm.ErrVMMRequest, m.Status, m.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration still %q: %w", m.Status, ctx.Err())
		case <-time.After(migratePoll):
		}
	}
}

// attachOwn gives a restored clone, before its guest resumes, what is its
// own and not its template's:
//   - Its disks: the command line opened the clone's images where the
//     template had empty placeholders, and the guest still sees their
//     sizes as the template's (none). block_resize to each image's size
//     makes the device announce its capacity; the agent waits for it.
//   - Its virtiofs shares: hot-added to the template's empty PCIe root
//     ports (hotplugShares), each on its virtiofsd's socket; pciehp finds
//     them as the guest resumes, and the agent waits for their tags.
func (v *VM) attachOwn(q *qmpConn) error {
	if !v.resized {
		for i, d := range v.cfg.Disks {
			fi, err := os.Stat(d.Path)
			if err != nil {
				return fmt.Errorf("%w: sizing disk %d: %w", vmm.ErrNotReadyable, i, err)
			}
			if _, err := q.executeArgs("block_resize", map[string]any{"device": fmt.Sprintf("d%d", i), "size": fi.Size()}); err != nil {
				return fmt.Errorf("%w: giving disk %d (%q) its size: %w", vmm.ErrNotReadyable, i, d.Path, err)
			}
		}
		v.resized = true
	}
	if !hotplugShares(&v.cfg) {
		return nil
	}
	for i, s := range v.cfg.Shares {
		if s.Mode != vmm.ShareVirtiofs || i < v.hotAdded {
			continue
		}
		chardev := fmt.Sprintf("vfs%d", i)
		sock := map[string]any{"type": "unix", "data": map[string]any{"path": v.cfg.SocketPath(vmm.VirtiofsSocket(i))}}
		if _, err := q.executeArgs("chardev-add", map[string]any{"id": chardev,
			"backend": map[string]any{"type": "socket", "data": map[string]any{"addr": sock, "server": false}}}); err != nil {
			return fmt.Errorf("%w: adding share %q: connecting to its virtiofsd: %w", vmm.ErrNotReadyable, s.Tag, err)
		}
		if _, err := q.executeArgs("device_add", map[string]any{"driver": "vhost-user-fs-pci", "id": chardev + "dev",
			"chardev": chardev, "tag": s.Tag, "bus": rootPort(i)}); err != nil {
			return fmt.Errorf("%w: adding share %q: %w", vmm.ErrNotReadyable, s.Tag, err)
		}
		v.hotAdded = i + 1
	}
	return nil
}

// restore is a clone's readiness step (Supervisor.Ready, polled): qemu
// waits in "inmigrate" for its state, which restore starts loading from
// RestoreFrom.State once; the loaded guest is "paused" (its template was
// saved stopped) until restore resumes it; "running" is ready.
func (v *VM) restore(ctx context.Context) error {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	q, err := qmpDial(ctx, v.cfg.SocketPath(qmpSocket))
	if err != nil {
		return err
	}
	defer q.Close()
	st, err := queryStatus(q)
	if err != nil {
		return err
	}
	if st == "inmigrate" {
		if !v.incoming {
			if _, err := q.executeArgs("migrate-set-capabilities", ignoreShared); err != nil {
				return err
			}
			// qemu's own descriptor (Start opened it): "fd:" takes a
			// number as well as a name given with getfd.
			uri := fmt.Sprintf("fd:%d", cloneStateFd)
			if _, err := q.executeArgs("migrate-incoming", map[string]any{"uri": uri}); err != nil {
				return err
			}
			v.incoming = true
		}
		if err := waitMigration(ctx, q); err != nil {
			return fmt.Errorf("restoring from %q: %w", v.cfg.RestoreFrom.State, err)
		}
		// Loaded: the guest is on its way to "paused".
		for st == "inmigrate" {
			select {
			case <-ctx.Done():
				return fmt.Errorf("restoring from %q: still loading: %w", v.cfg.RestoreFrom.State, ctx.Err())
			case <-time.After(migratePoll):
			}
			if st, err = queryStatus(q); err != nil {
				return err
			}
		}
	}
	switch st {
	case "running":
		return nil
	case "paused":
		if err := v.attachOwn(q); err != nil {
			return err
		}
		if _, err := q.execute("cont"); err != nil {
			return err
		}
		if st, err = queryStatus(q); err != nil {
			return err
		}
		if st != "running" {
			return fmt.Errorf("qemu status %q after resuming the restored guest", st)
		}
		return nil
	}
	return fmt.Errorf("qemu status %q while restoring", st)
}
