package runtime

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/network"
)

// guestTap is the tap's name inside the engine's network namespace.
const guestTap = "initos-tap0"

// attachNetworkFunc is network.AttachToNetns; tests replace it.
var attachNetworkFunc = network.AttachToNetns

// attachNetwork gives the VM the network of the engine's namespace (design
// section 5: podman's netavark, nerdctl's CNI): when the spec names a
// network namespace path whose interface has an address, a tap in it is
// redirected both ways to that interface and the guest takes its address
// and MAC. A namespace with only loopback (--network none) or no path (a
// new, empty namespace) gives the guest loopback only.
func attachNetwork(s *specs.Spec) (*network.Attachment, error) {
	path, ok := netnsPath(s)
	if !ok {
		// config-linux.md: "If a namespace type is not specified in the
		// namespaces array, the container MUST inherit the runtime
		// namespace of that type" — the host's network stack, which a VM
		// cannot share.
		return nil, fmt.Errorf("%w: the spec has no network namespace, so the container would share the host's network stack (--network host), which a VM cannot do; give it a network namespace", ErrUnsupported)
	}
	if path == "" {
		return nil, nil
	}
	att, err := attachNetworkFunc(path, guestTap)
	if errors.Is(err, network.ErrNoInterface) {
		return nil, nil
	}
	return att, err
}

// netnsPath is the path of the spec's network namespace ("" for a new
// one); ok is false when the spec has none (the host's).
func netnsPath(s *specs.Spec) (path string, ok bool) {
	if s.Linux == nil {
		return "", false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path, true
		}
	}
	return "", false
}
