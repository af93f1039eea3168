package network

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestLinkTap is the late network mode: the tap is made in an empty
// namespace first (the VM boots on it), the engine adds its veth with an
// address afterwards (netavark after `create`), and LinkTap then finds
// that interface and redirects it to the tap both ways.
func TestLinkTap(t *testing.T) {
	needRoot(t)
	p := newEmptyPair(t)

	if err := CreateTapIn(p.ctr, "tap0", 0); err != nil {
		t.Fatalf("CreateTapIn: %v", err)
	}
	tap, err := p.hCtr.LinkByName("tap0")
	if err != nil {
		t.Fatalf("tap0 not in the namespace: %v", err)
	}
	if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("tap0 is %s %+v, want a tap that is up", tap.Type(), tap.Attrs())
	}
	if _, err := p.hOuter.LinkByName("tap0"); err == nil {
		t.Error("tap0 was created in the outer namespace too")
	}
	if err := CreateTapIn(p.ctr, "tap0", 0); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateTapIn: %v, want %v", err, ErrExists)
	}

	// Before the engine: only loopback and the tap. An address on the
	// tap itself never makes it the engine's interface.
	must(t, p.hCtr.AddrAdd(tap, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(32, 32)}}))
	if a, err := LinkTap(p.ctr, "tap0"); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("LinkTap before the engine = %+v, %v; want %v", a, err, ErrNoInterface)
	}
	if links := ingressLinks(t, p.ctr); links != "" {
		t.Errorf("ingress qdiscs %q after a LinkTap that found nothing", links)
	}

	p.plug(t, 1400)
	eth0, err := p.hCtr.LinkByName("eth0")
	must(t, err)
	a, err := LinkTap(p.ctr, "tap0")
	if err != nil {
		t.Fatalf("LinkTap: %v", err)
	}
	if a.Iface != "eth0" || a.Tap != "tap0" || a.MTU != 1400 || !a.IP.IP.Equal(p.ip) || a.IP.Mask.String() != "ffffff00" ||
		!a.Gateway.Equal(p.outerIP) || a.MAC.String() != eth0.Attrs().HardwareAddr.String() || a.NetnsPath != p.ctr {
		t.Errorf("attachment = %+v; want eth0, tap0, MTU 1400, %v/24, gw %v, MAC %v", a, p.ip, p.outerIP, eth0.Attrs().HardwareAddr)
	}
	if tap, err = p.hCtr.LinkByName("tap0"); err != nil {
		t.Fatal(err)
	}
	if tap.Attrs().MTU != 1400 {
		t.Errorf("tap0 MTU %d, want the interface's 1400", tap.Attrs().MTU)
	}
	for _, dir := range []struct{ from, to netlink.Link }{{eth0, tap}, {tap, eth0}} {
		got, err := redirectTarget(ingressFilters(t, p.hCtr, dir.from))
		if err != nil || got != dir.to.Attrs().Index {
			t.Errorf("%s ingress redirect: target %d (%v), want %s (%d)", dir.from.Attrs().Name, got, err, dir.to.Attrs().Name, dir.to.Attrs().Index)
		}
	}

	// A second link fails (the qdiscs are there) and leaves the first.
	if _, err := LinkTap(p.ctr, "tap0"); err == nil {
		t.Error("second LinkTap succeeded")
	}
	if links := ingressLinks(t, p.ctr); links != "eth0,tap0" && links != "tap0,eth0" {
		t.Errorf("links with an ingress qdisc after a failed second LinkTap: %q, want eth0 and tap0", links)
	}

	f, err := a.OpenTap()
	if err != nil {
		t.Fatalf("OpenTap: %v", err)
	}
	defer f.Close()
	assertRedirects(t, p, a, f)

	if err := a.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if _, err := p.hCtr.LinkByName("tap0"); err == nil {
		t.Error("tap0 still exists after Detach")
	}
	if links := ingressLinks(t, p.ctr); links != "" {
		t.Errorf("ingress qdiscs %q left after Detach", links)
	}
}

func TestLinkTapErrors(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the namespace path
		tap   string
		want  error
	}{
		{"no tap", func(t *testing.T) string { return newPair(t, 0).ctr }, "tap0", os.ErrNotExist},
		{"not a tap", func(t *testing.T) string {
			p := newPair(t, 0)
			must(t, p.hCtr.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, PeerName: "tap0p"}))
			return p.ctr
		}, "tap0", ErrNotTap},
		{"two interfaces", func(t *testing.T) string {
			p := newPair(t, 0)
			must(t, CreateTapIn(p.ctr, "tap0", 0))
			d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth1"}, PeerName: "eth1p"}
			must(t, p.hCtr.LinkAdd(d))
			must(t, p.hCtr.AddrAdd(d, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 201, 0, 2), Mask: net.CIDRMask(24, 32)}}))
			return p.ctr
		}, "tap0", ErrAmbiguousInterface},
		{"tap ingress taken", func(t *testing.T) string {
			// Fails after eth0's qdisc was added: the rollback removes it.
			p := newPair(t, 0)
			must(t, CreateTapIn(p.ctr, "tap0", 0))
			tap, err := p.hCtr.LinkByName("tap0")
			must(t, err)
			must(t, addIngress(p.hCtr, tap))
			return p.ctr
		}, "tap0", unix.EEXIST},
		{"tap name too long", func(t *testing.T) string { return newPair(t, 0).ctr }, "tap-name-is-too-long", ErrInvalidArgument},
		{"no such namespace", func(t *testing.T) string { return "/run/netns/initos-missing-" + randSuffix() }, "tap0", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			before := ingressLinks(t, path)
			a, err := LinkTap(path, tt.tap)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LinkTap = %+v, %v; want %v", a, err, tt.want)
			}
			t.Logf("error: %v", err)
			if after := ingressLinks(t, path); after != before {
				t.Errorf("links with an ingress qdisc: %q before, %q after the failed link", before, after)
			}
		})
	}
}

func TestCreateTapInErrors(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name, ns, tap string
		mtu           int
		want          error
	}{
		{"negative MTU", "", "tap0", -1, ErrInvalidArgument},
		{"bad name", "", "a/b", 0, ErrInvalidArgument},
		{"no such namespace", "/run/netns/initos-missing-" + randSuffix(), "tap0", 0, os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ns == "" {
				tc.ns = newNetns(t, "initos-tap")
			}
			if err := CreateTapIn(tc.ns, tc.tap, tc.mtu); !errors.Is(err, tc.want) {
				t.Errorf("CreateTapIn(%q, %q, %d) = %v, want %v", tc.ns, tc.tap, tc.mtu, err, tc.want)
			}
		})
	}
}

func TestLoopbackUp(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, "initos-lo")
	if err := LoopbackUp(ns); err != nil {
		t.Fatalf("LoopbackUp: %v", err)
	}
	lo, err := handleAt(t, ns).LinkByName("lo")
	must(t, err)
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo flags %v, want up", lo.Attrs().Flags)
	}
}
