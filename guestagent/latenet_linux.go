package guestagent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// The late network mode (docs/architecture.md): the VM boots with a NIC
// whose driver is not loaded, because the engine configures the network
// only after `create` (buildah's RUN steps: netavark in the namespace of
// the pid that create reported). At start the host links the tap to the
// engine's interface and calls ConfigureNetwork with that interface's
// address, gateway, MTU and MAC; a VM that never gets a network never pays
// for the driver.

// netGroup is the module group of the NIC's driver (docs/contracts.md).
const netGroup = "net"

// lateNet is what ConfigureNetwork needs of the guest.
type lateNet struct {
	// loadGroup loads a module group of the initrd.
	loadGroup func(group string) error
	nl        netlinker
	// wait bounds the wait for the NIC once its driver is loaded.
	wait time.Duration

	mu         sync.Mutex
	configured bool
	// resolvConf is what the request's name server asks for (dns), or "".
	resolvConf string
}

func defaultLateNet(log *logger) *lateNet {
	return &lateNet{
		loadGroup: func(group string) error {
			_, _, err := loadGroups(ModulesDir, false, []string{group}, finitModule, debugLoaded(log))
			return err
		},
		nl:   realNetlink{},
		wait: 10 * time.Second,
	}
}

// ConfigureNetwork loads the NIC's driver, waits for eth0 and gives it the
// engine interface's MAC, MTU, address and default route. It succeeds once
// per guest: a second call is ErrAlreadyExists.
func (s *Service) ConfigureNetwork(_ context.Context, req *agentapi.NetworkRequest) (*agentapi.Empty, error) {
	n, mac, err := parseNetworkRequest(req)
	if err != nil {
		return nil, err
	}
	ln := s.net
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.configured {
		return nil, errorf(ErrAlreadyExists, "configuring %s: the network is configured already", guestNIC)
	}
	start := time.Now()
	if err := ln.loadGroup(netGroup); err != nil {
		return nil, errorf(ErrFailedPrecondition, "configuring %s: loading module group %q: %w", guestNIC, netGroup, err)
	}
	if err := configureNIC(ln.nl, guestNIC, n, mac, ln.wait); err != nil {
		return nil, err
	}
	// virtio_net turns the carrier on asynchronously after its probe, and
	// until the link is operationally up its queue drops what the
	// container's first commands send.
	if err := waitOperUp(ln.nl, guestNIC, ln.wait); err != nil {
		return nil, err
	}
	ln.configured = true
	ln.resolvConf = n.ResolvConf()
	s.log.Debugf("network: %s is %s (gateway %v, MTU %d, MAC %s) after %v", guestNIC, n.Addr, n.Gateway, n.MTU, mac, time.Since(start).Round(time.Millisecond))
	return &agentapi.Empty{}, nil
}

// parseNetworkRequest checks a ConfigureNetwork request as parseXIP checks
// xip=, and the MAC: one unicast Ethernet address, or none.
func parseNetworkRequest(req *agentapi.NetworkRequest) (*NetConfig, net.HardwareAddr, error) {
	bad := func(format string, args ...any) error {
		return errorf(ErrInvalidArgument, "configuring %s: "+format, append([]any{guestNIC}, args...)...)
	}
	n, err := newNetConfig(req.Address, req.Gateway, bad)
	if err != nil {
		return nil, nil, err
	}
	if req.Mtu != 0 {
		if !validMTU(int(req.Mtu)) {
			return nil, nil, bad("mtu %d: want a number from 68 to 65535", req.Mtu)
		}
		n.MTU = int(req.Mtu)
	}
	// The name server may be of either family, as in xip=.
	if req.Dns != "" {
		if n.DNS, err = netip.ParseAddr(req.Dns); err != nil {
			return nil, nil, bad("dns: %w", err)
		}
	}
	var mac net.HardwareAddr
	if req.Mac != "" {
		if mac, err = net.ParseMAC(req.Mac); err != nil {
			return nil, nil, bad("mac: %w", err)
		}
		if len(mac) != 6 || mac[0]&1 != 0 || string(mac) == string(make([]byte, 6)) {
			return nil, nil, bad("mac %s: want a unicast Ethernet address", mac)
		}
	}
	return n, mac, nil
}

// resolvConf is the resolv.conf of containers whose spec mounts none: the
// name server ConfigureNetwork gave, else xip='s (cfg.ResolvConf).
func (s *Service) resolvConf() string {
	ln := s.net
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.resolvConf != "" {
		return ln.resolvConf
	}
	return s.cfg.ResolvConf
}

// waitOperUp polls the interface name until its operational state is up
// (or unknown: a driver that does not report it) or wait has passed.
func waitOperUp(nl netlinker, name string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		link, err := nl.LinkByName(name)
		if err != nil {
			return fmt.Errorf("finding %s: %w", name, err)
		}
		state := link.Attrs().OperState
		if state == netlink.OperUp || state == netlink.OperUnknown {
			return nil
		}
		if time.Now().After(deadline) {
			return errorf(ErrFailedPrecondition, "%s is not up within %v: operational state %s (no carrier?)", name, wait, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
