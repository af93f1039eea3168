package guestagent

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinker is the part of netlink the network setup uses.
type netlinker interface {
	LinkByName(name string) (netlink.Link, error)
	LinkSetUp(link netlink.Link) error
	// SetUpByName sets the link name up without netlink (setLinkUp).
	SetUpByName(name string) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetHardwareAddr(link netlink.Link, hwaddr net.HardwareAddr) error
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	RouteAdd(route *netlink.Route) error
}

// realNetlink is the kernel's netlink.
type realNetlink struct{}

func (realNetlink) LinkByName(name string) (netlink.Link, error) { return netlink.LinkByName(name) }
func (realNetlink) LinkSetUp(l netlink.Link) error               { return netlink.LinkSetUp(l) }
func (realNetlink) SetUpByName(name string) error                { return setLinkUp(name) }
func (realNetlink) LinkSetMTU(l netlink.Link, mtu int) error     { return netlink.LinkSetMTU(l, mtu) }
func (realNetlink) LinkSetHardwareAddr(l netlink.Link, mac net.HardwareAddr) error {
	return netlink.LinkSetHardwareAddr(l, mac)
}
func (realNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error { return netlink.AddrAdd(l, a) }
func (realNetlink) RouteAdd(r *netlink.Route) error               { return netlink.RouteAdd(r) }

// setupNetwork brings lo up and, with xip=, configures eth0: the address,
// link up and the default route via the gateway. wait bounds the wait for
// eth0 to appear after virtio_net loads.
func setupNetwork(nl netlinker, n *NetConfig, wait time.Duration) error {
	// By ioctl: a VM without a NIC (--network none, the CLI's default)
	// then runs no netlink code at boot, which under TCG is translated
	// afresh in each boot (the step took 62-76 ms with netlink, 26-40 ms
	// so, 5 boots each).
	if err := nl.SetUpByName("lo"); err != nil {
		return err
	}
	if n == nil {
		return nil
	}
	return configureNIC(nl, guestNIC, n, nil, wait)
}

// guestNIC is the guest's one network interface (docs/contracts.md).
const guestNIC = "eth0"

// configureNIC waits up to wait for the interface name to appear, gives it
// mac (when set), n's MTU and address, sets it up and adds the default
// route via n's gateway: xip= at boot, ConfigureNetwork later.
func configureNIC(nl netlinker, name string, n *NetConfig, mac net.HardwareAddr, wait time.Duration) error {
	link, err := waitLink(nl, name, wait)
	if err != nil {
		return err
	}
	if len(mac) > 0 {
		// Before it is up: the address its peers expect from the start.
		if err := nl.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("setting the MAC of %s to %s: %w", name, mac, err)
		}
	}
	if n.MTU > 0 {
		// The engine's interface's MTU (an overlay's 1450, say): the
		// guest must not send frames the tap's peer cannot carry.
		if err := nl.LinkSetMTU(link, n.MTU); err != nil {
			return fmt.Errorf("setting the MTU of %s to %d: %w", name, n.MTU, err)
		}
	}
	bits := 32
	if n.Addr.Addr().Is6() {
		bits = 128
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.Addr.Addr().AsSlice(), Mask: net.CIDRMask(n.Addr.Bits(), bits)}}
	if err := nl.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", n.Addr, name, err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	if n.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: n.Gateway.AsSlice()}
		if err := nl.RouteAdd(route); err != nil {
			return fmt.Errorf("adding the default route via %s on %s: %w", n.Gateway, name, err)
		}
	}
	return nil
}

// waitLink polls for the interface name until it appears (the NIC's driver
// has just loaded) or wait has passed.
func waitLink(nl netlinker, name string, wait time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(wait)
	for {
		link, err := nl.LinkByName(name)
		if err == nil {
			return link, nil
		}
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return nil, fmt.Errorf("finding %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return nil, errorf(ErrNotFound, "%s did not appear within %v (is the net module group loaded?)", name, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setLinkUp sets IFF_UP on the interface name: SIOCGIFFLAGS and
// SIOCSIFFLAGS on a datagram socket, as ifconfig does.
func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening a socket to set %s up: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("setting %q up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading the flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}
