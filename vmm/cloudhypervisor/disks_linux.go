package cloudhypervisor

import (
	"context"
	"fmt"
	"sync/atomic"
)

// hotplugSeq numbers hotplugged disks; their id doubles as the serial.
var hotplugSeq atomic.Uint64

// AttachDisk hotplugs the raw image at path (PUT vm.add-disk) and returns
// its serial, by which the guest finds it.
func (v *VM) AttachDisk(ctx context.Context, path string) (string, error) {
	serial := fmt.Sprintf("initos-h%d", hotplugSeq.Add(1))
	err := v.control(ctx, "add-disk", func(ctx context.Context) error {
		return v.api.hotplug(ctx, diskConfig{Path: path, ID: serial, Serial: serial})
	})
	if err != nil {
		return "", err
	}
	return serial, nil
}

// DetachDisk unplugs the disk with serial (PUT vm.remove-device).
func (v *VM) DetachDisk(ctx context.Context, serial string) error {
	return v.control(ctx, "remove-device", func(ctx context.Context) error {
		return v.api.removeDevice(ctx, serial)
	})
}
