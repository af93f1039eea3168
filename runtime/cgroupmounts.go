package runtime

import (
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupRoot is where containers see their cgroups.
const cgroupRoot = "/sys/fs/cgroup"

// guestCgroupMounts adapts the spec's cgroup mounts to the guest, whose
// cgroups are cgroup2 and its own. A mount below /sys/fs/cgroup is a
// cgroup v1 host's hierarchy (podman's /sys/fs/cgroup/systemd for a
// systemd container on such a host, bound from the host or mounted as
// "cgroup"): it means nothing in the VM and is dropped. A writable one
// says the engine hands the container its cgroups to manage, so the
// container's cgroup2 mount at /sys/fs/cgroup becomes writable, as podman
// makes it on a cgroup v2 host.
func guestCgroupMounts(mounts []specs.Mount) []specs.Mount {
	out := make([]specs.Mount, 0, len(mounts))
	for _, m := range mounts {
		if !strings.HasPrefix(filepath.Clean(m.Destination), cgroupRoot+"/") {
			out = append(out, m)
		}
	}
	if !cgroupsDelegated(mounts) {
		return out
	}
	for i, m := range out {
		if filepath.Clean(m.Destination) == cgroupRoot && (m.Type == "cgroup" || m.Type == "cgroup2") {
			opts := slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
			if !hasOption(opts, "rw") {
				opts = append(opts, "rw")
			}
			out[i].Options = opts
		}
	}
	return out
}

// cgroupsDelegated reports whether the spec gives the container its
// cgroups to manage: a writable mount at or below /sys/fs/cgroup (what
// podman does for systemd containers). The guest then gives it a cgroup
// namespace too (guestNamespaces), so that the cgroup its processes are in
// is the root of what it sees, as on a cgroup v2 host.
func cgroupsDelegated(mounts []specs.Mount) bool {
	for _, m := range mounts {
		dst := filepath.Clean(m.Destination)
		if (dst == cgroupRoot || strings.HasPrefix(dst, cgroupRoot+"/")) && !hasOption(m.Options, "ro") {
			return true
		}
	}
	return false
}
