package guestagent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// fakeNetlink records netlink calls; eth0 appears after appearAfter lookups
// and, once up, is operationally down for downFor more lookups.
type fakeNetlink struct {
	calls       []string
	appearAfter int
	lookups     int
	downFor     int
	up          bool
}

func (f *fakeNetlink) LinkByName(name string) (netlink.Link, error) {
	if name == "eth0" {
		f.lookups++
		if f.lookups <= f.appearAfter {
			return nil, netlink.LinkNotFoundError{}
		}
	}
	idx := map[string]int{"lo": 1, "eth0": 2}[name]
	state := netlink.LinkOperState(netlink.OperDown)
	if name == "eth0" && f.up {
		if f.downFor > 0 {
			f.downFor--
		} else {
			state = netlink.OperUp
		}
	}
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx, OperState: state}}, nil
}

func (f *fakeNetlink) LinkSetUp(l netlink.Link) error {
	f.up = f.up || l.Attrs().Name == "eth0"
	f.calls = append(f.calls, "up "+l.Attrs().Name)
	return nil
}

func (f *fakeNetlink) SetUpByName(name string) error {
	f.calls = append(f.calls, "up "+name)
	return nil
}

func (f *fakeNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	f.calls = append(f.calls, fmt.Sprintf("addr %s %s", l.Attrs().Name, a.IPNet))
	return nil
}

func (f *fakeNetlink) LinkSetMTU(l netlink.Link, mtu int) error {
	f.calls = append(f.calls, fmt.Sprintf("mtu %s %d", l.Attrs().Name, mtu))
	return nil
}

func (f *fakeNetlink) LinkSetHardwareAddr(l netlink.Link, mac net.HardwareAddr) error {
	f.calls = append(f.calls, fmt.Sprintf("mac %s %s", l.Attrs().Name, mac))
	return nil
}

func (f *fakeNetlink) RouteAdd(r *netlink.Route) error {
	f.calls = append(f.calls, fmt.Sprintf("route dev %d via %s dst %v", r.LinkIndex, r.Gw, r.Dst))
	return nil
}

func TestSetupNetwork(t *testing.T) {
	tests := []struct {
		name string
		net  *NetConfig
		want []string
	}{
		{"lo only", nil, []string{"up lo"}},
		{"address", &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24")},
			[]string{"up lo", "addr eth0 10.88.0.5/24", "up eth0"}},
		{"address and gateway", &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24"), Gateway: netip.MustParseAddr("10.88.0.1")},
			[]string{"up lo", "addr eth0 10.88.0.5/24", "up eth0", "route dev 2 via 10.88.0.1 dst <nil>"}},
		{"mtu", &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24"), MTU: 1450},
			[]string{"up lo", "mtu eth0 1450", "addr eth0 10.88.0.5/24", "up eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nl := &fakeNetlink{appearAfter: 2} // eth0 shows up late
			if err := setupNetwork(nl, tt.net, time.Second); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(nl.calls, tt.want) {
				t.Errorf("calls %q, want %q", nl.calls, tt.want)
			}
		})
	}
	nl := &fakeNetlink{appearAfter: 1 << 30}
	err := setupNetwork(nl, &NetConfig{Addr: netip.MustParsePrefix("10.0.0.2/24")}, 30*time.Millisecond)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("no eth0: %v", err)
	}
}
