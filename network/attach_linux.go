package network

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ingressHandle is ffff: , the handle of an ingress qdisc.
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// AttachToNetns joins the engine's interface in the network namespace nsPath
// to a new tap tapName: it finds the single non-loopback interface with an
// IPv4 address, reads its address, default gateway, MTU and MAC, creates the
// tap (same MTU, up) and redirects every frame between them with an ingress
// qdisc and a u32 match-all filter with a mirred egress redirect on each
// (interface ingress → tap egress, tap ingress → interface egress). On error
// nothing is left behind.
func AttachToNetns(nsPath, tapName string) (*Attachment, error) {
	if err := checkLinkName(tapName); err != nil {
		return nil, err
	}
	a := &Attachment{NetnsPath: nsPath, Tap: tapName}
	err := withHandle(nsPath, func(h *netlink.Handle) (retErr error) {
		iface, err := a.inspect(h, "")
		if err != nil {
			return err
		}
		tap, err := createTap(h, a.Tap, a.MTU, 0)
		if err != nil {
			return fmt.Errorf("network namespace %q: %w", nsPath, err)
		}
		defer func() {
			if retErr != nil {
				_ = h.LinkDel(tap) // takes its qdisc and filter along
			}
		}()
		return a.link(h, iface, tap)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// CreateTapIn creates the tap tapName (up, with MTU mtu when > 0) in the
// network namespace nsPath, attached to nothing yet: LinkTap joins it to
// the interface the engine puts there later (the late network mode).
func CreateTapIn(nsPath, tapName string, mtu int) error {
	if err := checkLinkName(tapName); err != nil {
		return err
	}
	if mtu < 0 {
		return fmt.Errorf("tap %q: MTU %d: %w", tapName, mtu, ErrInvalidArgument)
	}
	err := withHandle(nsPath, func(h *netlink.Handle) error {
		_, err := createTap(h, tapName, mtu, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", nsPath, err)
	}
	return nil
}

// LinkTap joins the existing tap tapName in the network namespace nsPath
// to the engine's interface there, as AttachToNetns does with a tap of its
// own: it finds the single non-loopback interface other than the tap with
// an IPv4 address, gives the tap its MTU and sets the redirects both ways.
// A namespace without such an interface is ErrNoInterface. On error the
// tap is left as it was (apart from its MTU) and the interface untouched.
func LinkTap(nsPath, tapName string) (*Attachment, error) {
	if err := checkLinkName(tapName); err != nil {
		return nil, err
	}
	a := &Attachment{NetnsPath: nsPath, Tap: tapName}
	err := withHandle(nsPath, func(h *netlink.Handle) (retErr error) {
		tap, err := lookupTap(h, tapName)
		if isNotFound(err) {
			return fmt.Errorf("network namespace %q: tap %q: %w", nsPath, tapName, fs.ErrNotExist)
		}
		if err != nil {
			return fmt.Errorf("network namespace %q: %w", nsPath, err)
		}
		iface, err := a.inspect(h, tapName)
		if err != nil {
			return err
		}
		if tap.Attrs().MTU != a.MTU {
			if err := h.LinkSetMTU(tap, a.MTU); err != nil {
				return fmt.Errorf("network namespace %q: setting MTU %d on tap %q: %w", nsPath, a.MTU, tapName, err)
			}
		}
		if tap.Attrs().Flags&net.FlagUp == 0 {
			if err := h.LinkSetUp(tap); err != nil {
				return fmt.Errorf("network namespace %q: setting tap %q up: %w", nsPath, tapName, err)
			}
		}
		return a.link(h, iface, tap)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// inspect finds the engine's interface (skipping the link named skip) and
// records its name, address, gateway, MTU and MAC; it runs inside the
// namespace.
func (a *Attachment) inspect(h *netlink.Handle, skip string) (netlink.Link, error) {
	iface, addr, err := findIface(h, a.NetnsPath, skip)
	if err != nil {
		return nil, err
	}
	attrs := iface.Attrs()
	a.Iface, a.MTU = attrs.Name, attrs.MTU
	a.MAC = append(net.HardwareAddr(nil), attrs.HardwareAddr...)
	a.IP = net.IPNet{IP: addr.IP.To4(), Mask: addr.Mask}
	if a.Gateway, err = defaultGateway(h, iface); err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", a.NetnsPath, err)
	}
	return iface, nil
}

// link redirects every frame between iface and tap: an ingress qdisc on
// each and a match-all mirred egress redirect to the other. It runs inside
// the namespace; on error it removes what it added.
func (a *Attachment) link(h *netlink.Handle, iface, tap netlink.Link) (retErr error) {
	if err := addIngress(h, iface); err != nil {
		return fmt.Errorf("network namespace %q: %w", a.NetnsPath, err)
	}
	defer func() {
		if retErr != nil {
			_ = delIngress(h, iface) // takes its filter along
		}
	}()
	if err := addIngress(h, tap); err != nil {
		return fmt.Errorf("network namespace %q: %w", a.NetnsPath, err)
	}
	defer func() {
		if retErr != nil {
			_ = delIngress(h, tap)
		}
	}()
	if err := addRedirect(h, iface, tap); err != nil {
		return fmt.Errorf("network namespace %q: %w", a.NetnsPath, err)
	}
	if err := addRedirect(h, tap, iface); err != nil {
		return fmt.Errorf("network namespace %q: %w", a.NetnsPath, err)
	}
	return nil
}

// findIface returns the one non-loopback link with an IPv4 address and its
// first (primary) IPv4 address; the link named skip (our own tap) never
// counts.
func findIface(h *netlink.Handle, nsPath, skip string) (netlink.Link, *netlink.Addr, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("listing links in %q: %w", nsPath, err)
	}
	var (
		found     netlink.Link
		foundAddr *netlink.Addr
		seen      []string // every link, for the error
		hits      []string
	)
	for _, l := range links {
		attrs := l.Attrs()
		if attrs.Flags&net.FlagLoopback != 0 || (skip != "" && attrs.Name == skip) {
			continue
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, nil, fmt.Errorf("listing addresses of %q in %q: %w", attrs.Name, nsPath, err)
		}
		var v4 *netlink.Addr
		for i := range addrs {
			if addrs[i].IP.To4() != nil && addrs[i].Flags&unix.IFA_F_SECONDARY == 0 {
				v4 = &addrs[i]
				break
			}
		}
		if v4 == nil {
			seen = append(seen, attrs.Name+" ("+l.Type()+", no IPv4)")
			continue
		}
		hits = append(hits, attrs.Name+" "+v4.IPNet.String())
		found, foundAddr = l, v4
	}
	switch len(hits) {
	case 0:
		if len(seen) == 0 {
			seen = []string{"only loopback"}
		}
		return nil, nil, fmt.Errorf("network namespace %q: %w: found %s", nsPath, ErrNoInterface, strings.Join(seen, ", "))
	case 1:
		return found, foundAddr, nil
	default:
		return nil, nil, fmt.Errorf("network namespace %q: %w: %s", nsPath, ErrAmbiguousInterface, strings.Join(hits, ", "))
	}
}

// defaultGateway is the gateway of the IPv4 default route through link in the
// main table, or nil when there is none.
func defaultGateway(h *netlink.Handle, link netlink.Link) (net.IP, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes of %q: %w", link.Attrs().Name, err)
	}
	for _, r := range routes {
		if r.Gw == nil || r.Gw.To4() == nil {
			continue
		}
		if r.Dst == nil {
			return r.Gw.To4(), nil
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 && r.Dst.IP.IsUnspecified() {
			return r.Gw.To4(), nil
		}
	}
	return nil, nil
}

func addIngress(h *netlink.Handle, link netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: link.Attrs().Index,
		Handle:    ingressHandle,
		Parent:    netlink.HANDLE_INGRESS,
	}}
	// Add, not replace: an ingress qdisc someone else put there is theirs.
	if err := h.QdiscAdd(q); err != nil {
		return fmt.Errorf("adding ingress qdisc to %q: %w", link.Attrs().Name, err)
	}
	return nil
}

// delIngress removes the ingress qdisc of link, if it has one.
func delIngress(h *netlink.Handle, link netlink.Link) error {
	qdiscs, err := h.QdiscList(link)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("listing qdiscs of %q: %w", link.Attrs().Name, err)
	}
	for _, q := range qdiscs {
		if q.Type() != "ingress" {
			continue
		}
		if err := h.QdiscDel(q); err != nil && !isNotFound(err) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("deleting ingress qdisc of %q: %w", link.Attrs().Name, err)
		}
	}
	return nil
}

// addRedirect sends every frame arriving on from out of to: a u32 match-all
// filter on from's ingress with a mirred egress redirect that steals the frame.
func addRedirect(h *netlink.Handle, from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    ingressHandle,
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		// Sel nil: netlink builds the match-all selector (one zero key).
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("adding redirect filter %q → %q: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// OpenTap opens the tap from inside the attachment's namespace, for qemu's
// `-netdev tap,fd=N` (pass it in ExtraFiles). See OpenTap.
func (a *Attachment) OpenTap() (*os.File, error) {
	var f *os.File
	err := inNetns(a.NetnsPath, func() (err error) {
		f, err = OpenTap(a.Tap)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", a.NetnsPath, err)
	}
	return f, nil
}

// Detach removes the tap and both ingress qdiscs (and so the filters). It is
// idempotent, and a namespace that no longer exists is not an error.
func (a *Attachment) Detach() error {
	err := withHandle(a.NetnsPath, func(h *netlink.Handle) error {
		if a.Iface != "" {
			iface, err := h.LinkByName(a.Iface)
			switch {
			case err == nil:
				if err := delIngress(h, iface); err != nil {
					return err
				}
			case !isNotFound(err):
				return fmt.Errorf("looking up %q: %w", a.Iface, err)
			}
		}
		return deleteTap(h, a.Tap)
	})
	// The namespace is gone (file removed, or no longer an nsfs mount):
	// everything in it went with it.
	if errors.Is(err, errNetnsUnavailable) && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EINVAL)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detaching tap %q in network namespace %q: %w", a.Tap, a.NetnsPath, err)
	}
	return nil
}
