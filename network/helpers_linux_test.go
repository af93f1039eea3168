package network

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and links")
	}
}

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newNetns creates a named network namespace with a random suffix (removed
// at cleanup) and returns its path.
func newNetns(t *testing.T, prefix string) string {
	t.Helper()
	name := prefix + "-" + randSuffix()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

// handleAt is a netlink handle in the namespace at path, closed at cleanup.
func handleAt(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// nsPair is an "outside" namespace (the engine's bridge side) and a
// "container" namespace joined by a veth: out0 10.200.X.1/24 outside, eth0
// 10.200.X.2/24 inside with a default route via 10.200.X.1.
type nsPair struct {
	outer, ctr   string
	outerIP, ip  net.IP
	hOuter, hCtr *netlink.Handle
}

func newPair(t *testing.T, mtu int) *nsPair {
	t.Helper()
	p := newEmptyPair(t)
	p.plug(t, mtu)
	return p
}

// newEmptyPair is newPair's two namespaces, not joined yet (plug joins
// them later, as an engine configures a namespace that already exists).
func newEmptyPair(t *testing.T) *nsPair {
	t.Helper()
	b := make([]byte, 1)
	rand.Read(b)
	x := int(b[0])%250 + 2
	p := &nsPair{
		outer:   newNetns(t, "initos-out"),
		ctr:     newNetns(t, "initos-ctr"),
		outerIP: net.IPv4(10, 200, byte(x), 1).To4(),
		ip:      net.IPv4(10, 200, byte(x), 2).To4(),
	}
	p.hOuter, p.hCtr = handleAt(t, p.outer), handleAt(t, p.ctr)
	return p
}

// plug joins the pair's namespaces with the veth out0/eth0 and configures
// both ends (eth0's MTU when mtu > 0), as netavark or a CNI plugin does.
func (p *nsPair) plug(t *testing.T, mtu int) {
	t.Helper()
	ctrNs, err := netns.GetFromPath(p.ctr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrNs.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "out0", MTU: mtu},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ctrNs)),
	}
	if err := p.hOuter.LinkAdd(veth); err != nil {
		t.Fatalf("adding veth: %v", err)
	}
	mask := net.CIDRMask(24, 32)
	must(t, p.hOuter.AddrAdd(veth, &netlink.Addr{IPNet: &net.IPNet{IP: p.outerIP, Mask: mask}}))
	must(t, p.hOuter.LinkSetUp(veth))
	eth0, err := p.hCtr.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if mtu > 0 {
		must(t, p.hCtr.LinkSetMTU(eth0, mtu))
	}
	must(t, p.hCtr.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: p.ip, Mask: mask}}))
	must(t, p.hCtr.LinkSetUp(eth0))
	must(t, p.hCtr.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: p.outerIP}))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ingressFilters lists the filters on link's ingress qdisc.
func ingressFilters(t *testing.T, h *netlink.Handle, link netlink.Link) []netlink.Filter {
	t.Helper()
	fs, err := h.FilterList(link, ingressHandle)
	if err != nil {
		t.Fatalf("listing filters of %s: %v", link.Attrs().Name, err)
	}
	return fs
}

func hasIngress(t *testing.T, h *netlink.Handle, link netlink.Link) bool {
	t.Helper()
	qs, err := h.QdiscList(link)
	if err != nil {
		t.Fatalf("listing qdiscs of %s: %v", link.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Type() == "ingress" {
			return true
		}
	}
	return false
}

// redirectTarget is the ifindex of the single mirred egress redirect among
// filters, or an error describing what was found instead.
func redirectTarget(filters []netlink.Filter) (int, error) {
	var targets []int
	for _, f := range filters {
		u, ok := f.(*netlink.U32)
		if !ok {
			continue
		}
		for _, a := range u.Actions {
			if m, ok := a.(*netlink.MirredAction); ok && m.MirredAction == netlink.TCA_EGRESS_REDIR {
				targets = append(targets, m.Ifindex)
			}
		}
	}
	if len(targets) != 1 {
		return 0, fmt.Errorf("want one mirred egress redirect, found %v in %d filters", targets, len(filters))
	}
	return targets[0], nil
}
