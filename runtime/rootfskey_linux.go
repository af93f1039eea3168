package runtime

import (
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// rootfsKey names a bundle's rootfs for the disk cache when the engine
// mounted it as a fresh overlay of image layers (podman's containers/
// storage; containerd's shim passes the snapshot's key itself).
func rootfsKey(rootfs string) string {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(rootfs))
	if err != nil || len(ms) != 1 || ms[0].FSType != "overlay" {
		return ""
	}
	return bundle.OverlayKey(strings.Split(ms[0].VFSOptions, ","))
}

// cacheKey is the bundle's disk cache key: the caller's, else its
// rootfs mount's.
func cacheKey(b *bundle.Bundle) string {
	if b.CacheKey != "" {
		return b.CacheKey
	}
	return rootfsKey(b.Rootfs)
}
