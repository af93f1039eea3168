package qemu

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// AttachDisk gives the guest the raw image at path after boot: microvm
// has no hotplug, so the image is copied into a free slot (an empty disk
// of the boot configuration) and the slot is grown to the image's size
// with QMP block_resize, which the guest sees as a capacity change. It
// returns the slot's serial, by which the guest finds the disk.
func (v *VM) AttachDisk(ctx context.Context, path string) (string, error) {
	v.slotMu.Lock()
	defer v.slotMu.Unlock()
	idx := -1
	for i, d := range v.cfg.Disks {
		if d.Slot && !v.slotUsed[i] {
			idx = i
			break
		}
	}
	if idx < 0 {
		return "", fmt.Errorf("vm %q: attaching %q: %w: every disk slot is in use", v.cfg.ID, path, vmm.ErrNoSlot)
	}
	slot := v.cfg.Disks[idx]
	size, err := copyInto(slot.Path, path)
	if err != nil {
		return "", fmt.Errorf("vm %q: attaching %q: %w", v.cfg.ID, path, err)
	}
	if err := v.qmpExec(ctx, "block_resize", map[string]any{"device": fmt.Sprintf("d%d", idx), "size": size}); err != nil {
		_ = os.Truncate(slot.Path, 0)
		return "", fmt.Errorf("vm %q: attaching %q: %w", v.cfg.ID, path, err)
	}
	if v.slotUsed == nil {
		v.slotUsed = map[int]bool{}
	}
	v.slotUsed[idx] = true
	return slot.Serial, nil
}

// DetachDisk empties the slot with serial (block_resize to 0) for reuse;
// the guest must have unmounted it.
func (v *VM) DetachDisk(ctx context.Context, serial string) error {
	v.slotMu.Lock()
	defer v.slotMu.Unlock()
	for i, d := range v.cfg.Disks {
		if d.Slot && d.Serial == serial {
			if err := v.qmpExec(ctx, "block_resize", map[string]any{"device": fmt.Sprintf("d%d", i), "size": 0}); err != nil {
				return fmt.Errorf("vm %q: detaching disk %q: %w", v.cfg.ID, serial, err)
			}
			delete(v.slotUsed, i)
			return nil
		}
	}
	return fmt.Errorf("vm %q: detaching disk %q: no such slot", v.cfg.ID, serial)
}

// copyInto copies the image src into dst in place (qemu keeps dst open)
// and returns its size.
func copyInto(dst, src string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("copying %q into slot %q: %w", src, dst, err)
	}
	return n, nil
}
