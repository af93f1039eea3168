package network

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge makes the bridge name exist with the address gw (the subnet's
// gateway, e.g. 10.88.0.1/24) and up, in the calling thread's network
// namespace. It is idempotent: what exists is kept, a link of another kind
// with that name is ErrNotBridge.
func EnsureBridge(name string, gw net.IPNet) error {
	if err := checkLinkName(name); err != nil {
		return err
	}
	if gw.IP.To4() == nil || gw.Mask == nil {
		return fmt.Errorf("bridge %q: gateway %s: %w: want an IPv4 address with a mask", name, gw.String(), ErrInvalidArgument)
	}
	if ones, bits := gw.Mask.Size(); bits != 32 || ones == 0 || ones > 30 {
		return fmt.Errorf("bridge %q: gateway %s: %w: want an IPv4 prefix from /1 to /30", name, gw.String(), ErrInvalidArgument)
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("opening netlink handle: %w", err)
	}
	defer h.Close()

	link, err := h.LinkByName(name)
	if isNotFound(err) {
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
		if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: another process won the race
			return fmt.Errorf("creating bridge %q: %w", name, err)
		}
		link, err = h.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("looking up bridge %q: %w", name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("link %q (%s): %w", name, link.Type(), ErrNotBridge)
	}

	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of bridge %q: %w", name, err)
	}
	want := &net.IPNet{IP: gw.IP.To4(), Mask: gw.Mask}
	has := false
	for _, a := range addrs {
		if a.IP.Equal(want.IP) && a.Mask.String() == want.Mask.String() {
			has = true
		}
	}
	if !has {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: want}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("adding %s to bridge %q: %w", want, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting bridge %q up: %w", name, err)
	}
	return nil
}
