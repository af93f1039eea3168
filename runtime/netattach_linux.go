package runtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/network"
	"github.com/initos-runtime/initos-runtime/vmm"
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
	path, ok := NetnsPath(s)
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

// NetnsPath is the path of the spec's network namespace ("" for a new
// one); ok is false when the spec has none (the host's).
func NetnsPath(s *specs.Spec) (path string, ok bool) {
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

// The late network mode: a spec that asks for a new network namespace,
// on a host without the seed's bridge, gets a monitor with a network
// namespace of its own (prepareMonitor), as runc gives the container a new
// one; engines that configure the namespace of create's pid between
// create and start (buildah's RUN steps: netavark in
// /proc/<pid>/ns/net) configure the monitor's. The VM boots with a NIC on
// a tap in that namespace, but without the "net" module group, so a VM
// that never gets a network pays nothing at boot; at start the tap is
// linked to the interface the engine added, if any, and the guest agent
// configures its NIC (ConfigureNetwork). The tap, qdiscs and filters live
// and die with the monitor's namespace.

// Side effects of the late network mode; tests replace them.
var (
	createTapFunc = network.CreateTapIn
	linkTapFunc   = network.LinkTap
	detachFunc    = (*network.Attachment).Detach
)

// lateNetwork is a VM's NIC on a tap in the monitor's own network
// namespace, linked to the engine's interface at start.
type lateNetwork struct {
	nsPath string
	tap    string
	// mac is the NIC's MAC at boot; the guest takes the engine
	// interface's once linked.
	mac net.HardwareAddr

	mu sync.Mutex
	// att is the link to the engine's interface (nil: not linked).
	att        *network.Attachment
	configured bool
}

// newLateNetwork creates the tap in the monitor's own network namespace,
// for the VM's NIC.
func newLateNetwork() (*lateNetwork, error) {
	if err := createTapFunc(ownNetnsPath, guestTap, 0); err != nil {
		return nil, fmt.Errorf("creating the tap for the late network: %w", err)
	}
	return &lateNetwork{nsPath: ownNetnsPath, tap: guestTap, mac: randomMAC()}, nil
}

// randomMAC is a random locally administered unicast MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&0xfc | 0x02
	return mac
}

// nic is the VM's network device on the tap.
func (l *lateNetwork) nic() vmm.NIC {
	return vmm.NIC{Tap: l.tap, MAC: l.mac.String()}
}

// remove deletes the tap and, once linked, the engine interface's ingress
// qdisc (the namespace would take both along when the monitor ends).
func (l *lateNetwork) remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.att
	if a == nil {
		a = &network.Attachment{NetnsPath: l.nsPath, Tap: l.tap}
	}
	return detachFunc(a)
}

// bootMonitored boots the VM of a monitor's container; ownNetns says the
// monitor has a network namespace of its own (hostIdentity), where the VM
// then gets the late network's NIC.
func bootMonitored(ctx context.Context, c Config, b *bundle.Bundle, id, stateDir string, ownNetns bool) (*Instance, error) {
	d := defaultBootDeps()
	if ownNetns {
		d.lateNetwork = newLateNetwork
	}
	return boot(ctx, c, b, id, stateDir, false, d)
}

// attachLateNetwork links the VM's tap to the interface the engine put in
// the monitor's namespace since create and has the guest configure its NIC
// with that interface's address, gateway, MTU and MAC. Without a late
// network, or when the engine added no interface (--network none, a
// bundle of runc spec), it does nothing. After a failure it may be called
// again; once done it does nothing.
func (inst *Instance) attachLateNetwork(ctx context.Context) error {
	l := inst.late
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.configured {
		return nil
	}
	if l.att == nil {
		att, err := linkTapFunc(l.nsPath, l.tap)
		if errors.Is(err, network.ErrNoInterface) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("connecting container %q to its network: %w", inst.ID, err)
		}
		l.att = att
	}
	req := networkRequest(l.att)
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := inst.Agent.ConfigureNetwork(ctx, req)
		return err
	})
	if err != nil {
		return fmt.Errorf("configuring the network of container %q in the guest (%s on %s): %w", inst.ID, req.Address, l.att.Iface, err)
	}
	l.configured = true
	return nil
}

// networkRequest is the guest's ConfigureNetwork for attachment a: the
// engine interface's address, gateway, MTU and MAC.
func networkRequest(a *network.Attachment) *agentapi.NetworkRequest {
	req := &agentapi.NetworkRequest{Address: a.IP.String()}
	if a.Gateway != nil {
		req.Gateway = a.Gateway.String()
	}
	if a.MTU > 0 {
		req.Mtu = uint32(a.MTU)
	}
	if len(a.MAC) > 0 {
		req.Mac = a.MAC.String()
	}
	if a.DNS != nil {
		req.Dns = a.DNS.String()
	}
	return req
}
