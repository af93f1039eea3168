package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestAttachToNetns(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1400)
	eth0, err := p.hCtr.LinkByName("eth0")
	must(t, err)

	a, err := AttachToNetns(p.ctr, "tap0")
	if err != nil {
		t.Fatalf("AttachToNetns: %v", err)
	}
	if a.Iface != "eth0" || a.MTU != 1400 || !a.IP.IP.Equal(p.ip) || a.IP.Mask.String() != "ffffff00" ||
		!a.Gateway.Equal(p.outerIP) || a.MAC.String() != eth0.Attrs().HardwareAddr.String() {
		t.Errorf("attachment = %+v; want eth0, MTU 1400, %v/24, gw %v, MAC %v", a, p.ip, p.outerIP, eth0.Attrs().HardwareAddr)
	}
	// The interface's MTU goes to the guest.
	if want := "xip=" + p.ip.String() + "/24," + p.outerIP.String() + ",,1400"; a.KernelArg() != want {
		t.Errorf("KernelArg() = %q, want %q", a.KernelArg(), want)
	}

	tap, err := p.hCtr.LinkByName("tap0")
	if err != nil {
		t.Fatalf("tap0 not in the container namespace: %v", err)
	}
	if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
		t.Errorf("tap0 is %s %+v, want a tap", tap.Type(), tap)
	}
	if tap.Attrs().MTU != 1400 || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("tap0 MTU %d flags %v, want 1400 and up", tap.Attrs().MTU, tap.Attrs().Flags)
	}
	if _, err := p.hOuter.LinkByName("tap0"); err == nil {
		t.Error("tap0 was created in the outer namespace too")
	}
	for _, dir := range []struct{ from, to netlink.Link }{{eth0, tap}, {tap, eth0}} {
		if !hasIngress(t, p.hCtr, dir.from) {
			t.Errorf("%s has no ingress qdisc", dir.from.Attrs().Name)
		}
		got, err := redirectTarget(ingressFilters(t, p.hCtr, dir.from))
		if err != nil || got != dir.to.Attrs().Index {
			t.Errorf("%s ingress redirect: target %d (%v), want %s (%d)", dir.from.Attrs().Name, got, err, dir.to.Attrs().Name, dir.to.Attrs().Index)
		}
	}

	if err := a.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if _, err := p.hCtr.LinkByName("tap0"); err == nil {
		t.Error("tap0 still exists after Detach")
	}
	if hasIngress(t, p.hCtr, eth0) {
		t.Error("eth0 still has an ingress qdisc after Detach")
	}
	if err := a.Detach(); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	// Attach again after detach works (nothing was left behind).
	a2, err := AttachToNetns(p.ctr, "tap0")
	if err != nil {
		t.Fatalf("AttachToNetns after Detach: %v", err)
	}
	if out, err := exec.Command("ip", "netns", "del", filepath.Base(p.ctr)).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	if err := a2.Detach(); err != nil {
		t.Errorf("Detach with the namespace gone: %v", err)
	}
}

func TestAttachToNetnsErrors(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the namespace path
		tap   string
		want  error
	}{
		{"only loopback", func(t *testing.T) string { return newNetns(t, "initos-lo") }, "tap0", ErrNoInterface},
		{"no IPv4", func(t *testing.T) string {
			p := newPair(t, 0)
			eth0, err := p.hCtr.LinkByName("eth0")
			must(t, err)
			must(t, p.hCtr.AddrDel(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: p.ip, Mask: net.CIDRMask(24, 32)}}))
			return p.ctr
		}, "tap0", ErrNoInterface},
		{"two interfaces", func(t *testing.T) string {
			p := newPair(t, 0)
			// veth, not dummy: the dummy module may be unavailable.
			d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth1"}, PeerName: "eth1p"}
			must(t, p.hCtr.LinkAdd(d))
			must(t, p.hCtr.AddrAdd(d, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 201, 0, 2), Mask: net.CIDRMask(24, 32)}}))
			return p.ctr
		}, "tap0", ErrAmbiguousInterface},
		{"tap name taken", func(t *testing.T) string {
			p := newPair(t, 0)
			must(t, p.hCtr.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, PeerName: "tap0p"}))
			return p.ctr
		}, "tap0", ErrExists},
		{"ingress qdisc already on eth0", func(t *testing.T) string {
			// Fails after the tap exists: the rollback must remove it.
			p := newPair(t, 0)
			eth0, err := p.hCtr.LinkByName("eth0")
			must(t, err)
			must(t, addIngress(p.hCtr, eth0))
			return p.ctr
		}, "tap0", unix.EEXIST},
		{"tap name too long", func(t *testing.T) string { return newPair(t, 0).ctr }, "tap-name-is-too-long", ErrInvalidArgument},
		{"no such namespace", func(t *testing.T) string { return "/run/netns/initos-missing-" + randSuffix() }, "tap0", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			before := ingressLinks(t, path)
			a, err := AttachToNetns(path, tt.tap)
			if !errors.Is(err, tt.want) {
				t.Fatalf("AttachToNetns = %+v, %v; want %v", a, err, tt.want)
			}
			t.Logf("error: %v", err)
			if _, statErr := os.Stat(path); statErr != nil {
				return
			}
			// Nothing left behind: no new ingress qdisc, no tap.
			if after := ingressLinks(t, path); after != before {
				t.Errorf("links with an ingress qdisc: %q before, %q after the failed attach", before, after)
			}
			if l, err := handleAt(t, path).LinkByName(tt.tap); err == nil && l.Type() == "tuntap" {
				t.Errorf("tap %q left behind", tt.tap)
			}
		})
	}
}

// ingressLinks names the links of the namespace at path that have an ingress
// qdisc ("" when the namespace does not exist).
func ingressLinks(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	h := handleAt(t, path)
	links, err := h.LinkList()
	must(t, err)
	var names []string
	for _, l := range links {
		if hasIngress(t, h, l) {
			names = append(names, l.Attrs().Name)
		}
	}
	return strings.Join(names, ",")
}

// TestAttachTraffic proves the redirect both ways: the outer namespace sends
// a UDP datagram to the container address; its ARP request must come out of
// the tap; an ARP reply written into the tap must reach the outer namespace
// (which then sends the queued datagram, which must come out of the tap too).
func TestAttachTraffic(t *testing.T) {
	needRoot(t)
	p := newPair(t, 0)
	a, err := AttachToNetns(p.ctr, "tap0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Detach() })
	tap, err := a.OpenTap()
	if err != nil {
		t.Fatalf("OpenTap: %v", err)
	}
	defer tap.Close()
	assertRedirects(t, p, a, tap)
}

// assertRedirects checks that frames cross between the pair's container
// interface and the attachment's tap, opened as tap, both ways.
func assertRedirects(t *testing.T, p *nsPair, a *Attachment, tap *os.File) {
	t.Helper()
	payload := []byte("initos-probe-" + randSuffix())
	var conn *net.UDPConn
	err := inNetns(p.outer, func() (err error) {
		// The socket belongs to the namespace of the thread that creates it.
		conn, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: p.ip, Port: 9})
		return err
	})
	must(t, err)
	defer conn.Close()
	if _, err := conn.Write(payload); err != nil {
		t.Fatalf("sending to %v: %v", p.ip, err)
	}

	// eth0 ingress → tap egress: the ARP request for the container address.
	req := readFrame(t, tap, "ARP request for "+p.ip.String(), func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 &&
			binary.BigEndian.Uint16(f[20:]) == 1 && net.IP(f[38:42]).Equal(p.ip)
	})
	peerMAC, peerIP := net.HardwareAddr(req[22:28]), net.IP(req[28:32])

	// tap ingress → eth0 egress: the guest's ARP reply.
	reply := make([]byte, 0, 42)
	reply = append(reply, peerMAC...)
	reply = append(reply, a.MAC...)
	reply = append(reply, 0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2)
	reply = append(reply, a.MAC...)
	reply = append(reply, p.ip...)
	reply = append(reply, peerMAC...)
	reply = append(reply, peerIP...)
	if _, err := tap.Write(reply); err != nil {
		t.Fatalf("writing ARP reply to the tap: %v", err)
	}
	readFrame(t, tap, "the UDP datagram", func(f []byte) bool {
		return len(f) > 34 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 17 &&
			net.IP(f[30:34]).Equal(p.ip) && bytes.Contains(f, payload) &&
			bytes.Equal(f[0:6], a.MAC)
	})
}

// readFrame reads frames from the tap until match accepts one, for 5 s.
func readFrame(t *testing.T, tap *os.File, what string, match func([]byte) bool) []byte {
	t.Helper()
	must(t, tap.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 65536)
	var skipped int
	for {
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s on the tap (skipped %d other frames): %v", what, skipped, err)
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
		skipped++
	}
}

func TestKernelArg(t *testing.T) {
	ip := net.IPNet{IP: net.IPv4(10, 88, 0, 5).To4(), Mask: net.CIDRMask(24, 32)}
	gw, dns := net.IPv4(10, 88, 0, 1), net.IPv4(1, 1, 1, 1)
	tests := []struct {
		name    string
		gw, dns net.IP
		mtu     int
		want    string
	}{
		{"address only", nil, nil, 0, "xip=10.88.0.5/24"},
		{"gateway", gw, nil, 1500, "xip=10.88.0.5/24,10.88.0.1"},
		{"gateway and dns", gw, dns, 0, "xip=10.88.0.5/24,10.88.0.1,1.1.1.1"},
		{"dns without gateway", nil, dns, 0, "xip=10.88.0.5/24,,1.1.1.1"},
		{"mtu", gw, nil, 1450, "xip=10.88.0.5/24,10.88.0.1,,1450"},
		{"mtu alone", nil, nil, 9000, "xip=10.88.0.5/24,,,9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Attachment{IP: ip, Gateway: tt.gw, DNS: tt.dns, MTU: tt.mtu}
			if got := a.KernelArg(); got != tt.want {
				t.Errorf("KernelArg() = %q, want %q", got, tt.want)
			}
		})
	}
}
