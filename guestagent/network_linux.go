package guestagent

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
)

// netlinker is the part of netlink the network setup uses.
type netlinker interface {
	LinkByName(name string) (netlink.Link, error)
	LinkSetUp(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	RouteAdd(route *netlink.Route) error
}

// realNetlink is the kernel's netlink.
type realNetlink struct{}

func (realNetlink) LinkByName(name string) (netlink.Link, error)  { return netlink.LinkByName(name) }
func (realNetlink) LinkSetUp(l netlink.Link) error                { return netlink.LinkSetUp(l) }
func (realNetlink) LinkSetMTU(l netlink.Link, mtu int) error      { return netlink.LinkSetMTU(l, mtu) }
func (realNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error { return netlink.AddrAdd(l, a) }
func (realNetlink) RouteAdd(r *netlink.Route) error               { return netlink.RouteAdd(r) }

// setupNetwork brings lo up and, with xip=, configures eth0: the address,
// link up and the default route via the gateway. wait bounds the wait for
// eth0 to appear after virtio_net loads.
func setupNetwork(nl netlinker, n *NetConfig, wait time.Duration) error {
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	if n == nil {
		return nil
	}
	var eth0 netlink.Link
	deadline := time.Now().Add(wait)
	for {
		eth0, err = nl.LinkByName("eth0")
		if err == nil {
			break
		}
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return fmt.Errorf("finding eth0: %w", err)
		}
		if time.Now().After(deadline) {
			return errorf(ErrNotFound, "eth0 did not appear within %v (is the net module group loaded?)", wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n.MTU > 0 {
		// The engine's interface's MTU (an overlay's 1450, say): the
		// guest must not send frames the tap's peer cannot carry.
		if err := nl.LinkSetMTU(eth0, n.MTU); err != nil {
			return fmt.Errorf("setting the MTU of eth0 to %d: %w", n.MTU, err)
		}
	}
	bits := 32
	if n.Addr.Addr().Is6() {
		bits = 128
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.Addr.Addr().AsSlice(), Mask: net.CIDRMask(n.Addr.Bits(), bits)}}
	if err := nl.AddrAdd(eth0, addr); err != nil {
		return fmt.Errorf("adding %s to eth0: %w", n.Addr, err)
	}
	if err := nl.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bringing eth0 up: %w", err)
	}
	if n.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.Gateway.AsSlice()}
		if err := nl.RouteAdd(route); err != nil {
			return fmt.Errorf("adding the default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}
