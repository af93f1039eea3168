package runtime

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// guestNamespaces are the spec's namespaces as the guest makes them
// (config-linux.md namespaces: "If a path is not specified, the runtime MUST
// create a new container namespace of the given type"). The VM's network
// namespace is the container's (its NIC), so "network" is the VMM's
// business; a user namespace is refused by bundle.Load. A cgroup namespace
// is made only with a mount namespace (its cgroup2 mount lives there). A namespace with a path names one on the host:
// the VM's own container then shares the VM's (what the host's would be to
// runc), and a pod member shares the sandbox's UTS and IPC namespaces (the
// CRI's paths name the sandbox's). A pod member's PID namespace with a path
// is the sandbox's too (the CRI's shareProcessNamespace, NamespaceMode POD:
// "/proc/<sandbox pid>/ns/pid"): "pid" joins, last; without one (or
// without a PID namespace at all, which the shim refuses as hostPID) the
// member has a PID namespace of its own. A container given its cgroups to
// manage gets a cgroup namespace (cgroupsDelegated).
func guestNamespaces(s *specs.Spec, member bool) (ownPid bool, newNs, joinNs []string) {
	ownPid = member
	if s.Linux == nil {
		return ownPid, nil, nil
	}
	joinPid := false
	for _, ns := range s.Linux.Namespaces {
		switch ns.Type {
		case specs.PIDNamespace:
			switch {
			case ns.Path == "":
				ownPid = true
			case member:
				ownPid, joinPid = false, true
			}
		case specs.UTSNamespace, specs.IPCNamespace, specs.MountNamespace, specs.CgroupNamespace:
			name := string(ns.Type)
			switch {
			case ns.Path == "":
				newNs = append(newNs, name)
			case member && ns.Type != specs.MountNamespace && ns.Type != specs.CgroupNamespace:
				joinNs = append(joinNs, name)
			}
		}
	}
	if joinPid {
		// The PID namespace last: setns(2) of it applies to children only.
		joinNs = append(joinNs, string(specs.PIDNamespace))
	}
	if cgroupsDelegated(s.Mounts) && slices.Contains(newNs, string(specs.MountNamespace)) && !slices.Contains(newNs, string(specs.CgroupNamespace)) {
		newNs = append(newNs, string(specs.CgroupNamespace))
	}
	return ownPid, newNs, joinNs
}
