package network

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const tunDevice = "/dev/net/tun"

// checkLinkName rejects names the kernel would refuse or rewrite.
func checkLinkName(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." {
		return fmt.Errorf("link name %q: %w: must be 1 to %d bytes", name, ErrInvalidArgument, unix.IFNAMSIZ-1)
	}
	for _, c := range name {
		if c == '/' || c == ':' || c == '%' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("link name %q: %w: contains %q", name, ErrInvalidArgument, c)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// createTap creates a persistent, single-queue, root-owned tap device in the
// calling thread's namespace (h must be a handle of that namespace), sets its
// MTU (when > 0), enslaves it to masterIndex (when > 0) and sets it up.
func createTap(h *netlink.Handle, name string, mtu, masterIndex int) (_ *netlink.Tuntap, retErr error) {
	if err := checkLinkName(name); err != nil {
		return nil, err
	}
	if _, err := h.LinkByName(name); err == nil {
		return nil, fmt.Errorf("creating tap %q: %w", name, ErrExists)
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("looking up link %q: %w", name, err)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		// Not TUNTAP_MULTI_QUEUE: OpenTap attaches one single-queue fd.
		Flags: netlink.TUNTAP_NO_PI,
		Owner: 0, Group: 0,
	}
	// Opens /dev/net/tun in the calling thread's namespace: the device is
	// created there.
	if err := h.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("creating tap %q: %w", name, err)
	}
	defer func() {
		if retErr != nil {
			_ = h.LinkDel(tap)
		}
	}()
	if mtu > 0 {
		if err := h.LinkSetMTU(tap, mtu); err != nil {
			return nil, fmt.Errorf("setting MTU %d on tap %q: %w", mtu, name, err)
		}
	}
	if masterIndex > 0 {
		if err := h.LinkSetMasterByIndex(tap, masterIndex); err != nil {
			return nil, fmt.Errorf("attaching tap %q to link index %d: %w", name, masterIndex, err)
		}
	}
	if err := h.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("setting tap %q up: %w", name, err)
	}
	return tap, nil
}

// lookupTap finds the tap named name and refuses any other kind of link.
func lookupTap(h *netlink.Handle, name string) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("looking up tap %q: %w", name, err)
	}
	if t, ok := link.(*netlink.Tuntap); !ok || t.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, fmt.Errorf("link %q (%s): %w", name, link.Type(), ErrNotTap)
	}
	return link, nil
}

// CreateTap creates the persistent tap name with the given MTU (0: the
// kernel's default), enslaves it to bridge and sets it up, in the calling
// thread's network namespace.
func CreateTap(name, bridge string, mtu int) error {
	if mtu < 0 {
		return fmt.Errorf("tap %q: MTU %d: %w", name, mtu, ErrInvalidArgument)
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("opening netlink handle: %w", err)
	}
	defer h.Close()
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("looking up bridge %q for tap %q: %w", bridge, name, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("link %q (%s) for tap %q: %w", bridge, br.Type(), name, ErrNotBridge)
	}
	_, err = createTap(h, name, mtu, br.Attrs().Index)
	return err
}

// DeleteTap removes the tap name; a missing tap is not an error, a link of
// another kind is (ErrNotTap) and is left alone.
func DeleteTap(name string) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("opening netlink handle: %w", err)
	}
	defer h.Close()
	return deleteTap(h, name)
}

func deleteTap(h *netlink.Handle, name string) error {
	link, err := lookupTap(h, name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting tap %q: %w", name, err)
	}
	return nil
}

// OpenTap opens /dev/net/tun and attaches it to the existing tap name in the
// calling thread's network namespace (TUNSETIFF, IFF_TAP|IFF_NO_PI, no vnet
// header, single queue), as qemu wants for `-netdev tap,fd=N`. The file is
// non-blocking, so reads honour deadlines. It refuses to create a tap: the
// name must already be a tap device.
func OpenTap(name string) (*os.File, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle: %w", err)
	}
	defer h.Close()
	// TUNSETIFF on an unknown name would create a new, non-persistent tap.
	if _, err := lookupTap(h, name); err != nil {
		return nil, err
	}
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s for tap %q: %w", tunDevice, name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attaching %s to tap %q (TUNSETIFF): %w", tunDevice, name, err)
	}
	// Non-blocking before os.NewFile so the runtime poller takes the fd.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %q: setting non-blocking: %w", name, err)
	}
	return os.NewFile(uintptr(fd), tunDevice+":"+name), nil
}
