package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/network"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// The seed's bridge mode (design section 5): each host has a bridge with a
// /24, each VM a tap on it and an address from a file-locked IPAM, passed
// as xip= with the bridge's address as gateway and DNS server; the
// container's name goes to a hosts file that dnsmasq serves.

// bridgeLease is what a bridge-mode VM holds, released on teardown.
type bridgeLease struct {
	c     Config
	id    string
	tap   string
	ip    net.IPNet
	gw    net.IP
	hosts bool
}

// SetupBridge creates the bridge with its gateway address (idempotent).
func SetupBridge(c Config) (gw net.IPNet, err error) {
	ipam, err := bridgeIPAM(c)
	if err != nil {
		return gw, err
	}
	if gw, err = ipam.Gateway(); err != nil {
		return gw, err
	}
	if err := network.EnsureBridge(c.Bridge, gw); err != nil {
		return gw, err
	}
	if err := os.MkdirAll(filepath.Dir(c.HostsFile()), 0o755); err != nil {
		return gw, fmt.Errorf("creating %q: %w", filepath.Dir(c.HostsFile()), err)
	}
	return gw, nil
}

func bridgeIPAM(c Config) (*network.IPAM, error) {
	_, subnet, err := net.ParseCIDR(c.BridgeSubnet)
	if err != nil {
		return nil, fmt.Errorf("config: bridgeSubnet %q: %w", c.BridgeSubnet, err)
	}
	return &network.IPAM{Dir: c.leasesDir(), Subnet: *subnet}, nil
}

// bridgeExists tells whether this network namespace has the bridge.
var bridgeExists = func(name string) bool {
	l, err := netlink.LinkByName(name)
	return err == nil && l.Type() == "bridge"
}

// attachBridge gives container id an address, a tap on the bridge and a
// hosts entry. On error nothing is left.
func attachBridge(c Config, id string) (_ *bridgeLease, retErr error) {
	ipam, err := bridgeIPAM(c)
	if err != nil {
		return nil, err
	}
	gw, err := ipam.Gateway()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.leasesDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating %q: %w", c.leasesDir(), err)
	}
	alive := func(owner string) bool {
		_, err := os.Stat(stateDir(c, owner))
		return err == nil
	}
	ip, err := ipam.Allocate(id, alive)
	if err != nil {
		return nil, fmt.Errorf("allocating an address on %s: %w", c.Bridge, err)
	}
	l := &bridgeLease{c: c, id: id, ip: ip, gw: gw.IP, tap: tapName(id)}
	defer func() {
		if retErr != nil {
			l.release()
		}
	}()
	if err := network.CreateTap(l.tap, c.Bridge, 0); err != nil {
		return nil, err
	}
	switch err := network.WriteHost(c.HostsFile(), id, ip.IP); {
	case errors.Is(err, network.ErrInvalidArgument):
		// An id that is no DNS name (runc allows "+"): no name, still
		// an address.
	case err != nil:
		return nil, err
	default:
		l.hosts = true
	}
	return l, nil
}

// tapName is a stable, short (≤15 bytes) interface name for a container.
func tapName(id string) string {
	h := sha256.Sum256([]byte(id))
	return "itap" + hex.EncodeToString(h[:5])
}

// nic is the VM's network device: a MAC derived from the address
// (locally administered), on the tap.
func (l *bridgeLease) nic() vmm.NIC {
	ip4 := l.ip.IP.To4()
	mac := net.HardwareAddr{0x02, 0x49, ip4[0], ip4[1], ip4[2], ip4[3]}
	return vmm.NIC{Tap: l.tap, MAC: mac.String()}
}

// kernelArg configures a booted VM's NIC: the bridge's address is its
// gateway and DNS server (dnsmasq).
func (l *bridgeLease) kernelArg() string { return network.XIPArg(l.ip, l.gw, l.gw, 0) }

// networkRequest is kernelArg for a clone (ConfigureNetwork), with the
// NIC's MAC: its template's is not its own.
func (l *bridgeLease) networkRequest() *agentapi.NetworkRequest {
	return &agentapi.NetworkRequest{Address: l.ip.String(), Gateway: l.gw.String(), Dns: l.gw.String(), Mac: l.nic().MAC}
}

// release removes the hosts entry and the tap and frees the address.
func (l *bridgeLease) release() error {
	var errs []error
	if l.hosts {
		if err := network.RemoveHost(l.c.HostsFile(), l.id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := network.DeleteTap(l.tap); err != nil {
		errs = append(errs, err)
	}
	if ipam, err := bridgeIPAM(l.c); err == nil {
		if err := ipam.Release(l.id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// releaseBridge releases whatever container id may still hold on the
// bridge (delete after a crashed monitor); nothing held is not an error.
func releaseBridge(c Config, id string) error {
	if _, err := os.Stat(c.leasesDir()); err != nil {
		return nil // bridge mode never used here
	}
	l := &bridgeLease{c: c, id: id, tap: tapName(id), hosts: true}
	if _, err := os.Stat(c.HostsFile()); err != nil {
		l.hosts = false
	}
	if err := l.release(); err != nil && !errors.Is(err, network.ErrInvalidArgument) {
		return err
	}
	return nil
}
