package bundle

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// namespaceTypes are the namespace types of config-linux.md.
var namespaceTypes = map[specs.LinuxNamespaceType]bool{
	specs.PIDNamespace: true, specs.NetworkNamespace: true, specs.MountNamespace: true,
	specs.IPCNamespace: true, specs.UTSNamespace: true, specs.UserNamespace: true,
	specs.CgroupNamespace: true, specs.TimeNamespace: true,
}

// validateNamespaces checks linux.namespaces and refuses a user namespace:
// the guest runs the container's processes with the uids the spec names
// and the VM is the boundary between them and the host.
func validateNamespaces(l *specs.Linux) error {
	if l == nil {
		return nil
	}
	seen := map[specs.LinuxNamespaceType]int{}
	for i, ns := range l.Namespaces {
		if !namespaceTypes[ns.Type] {
			return fmt.Errorf("linux.namespaces[%d]: unknown type %q", i, ns.Type)
		}
		// config-linux.md namespaces: "If a namespace type is specified
		// more than once, the runtime MUST generate an error."
		if j, ok := seen[ns.Type]; ok {
			return fmt.Errorf("linux.namespaces[%d]: type %q duplicates linux.namespaces[%d] (a namespace type MUST appear once)", i, ns.Type, j)
		}
		seen[ns.Type] = i
		if ns.Type == specs.UserNamespace {
			return fmt.Errorf("linux.namespaces[%d]: user namespaces are not supported by initos-runtime: %w", i, errUserNamespace)
		}
	}
	if len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 {
		return fmt.Errorf("linux.uidMappings/gidMappings: %w", errUserNamespace)
	}
	return nil
}

// errUserNamespace says why user namespaces are refused.
var errUserNamespace = errors.New("the container runs in a VM of its own with the uids its spec names; run it without a user namespace (podman/nerdctl without --userns, Kubernetes with hostUsers: true)")
