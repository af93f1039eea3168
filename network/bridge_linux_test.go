package network

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestBridgeAndTap(t *testing.T) {
	needRoot(t)
	path := newNetns(t, "initos-br")
	h := handleAt(t, path)
	gw := net.IPNet{IP: net.IPv4(10, 88, 0, 1).To4(), Mask: net.CIDRMask(24, 32)}
	in := func(fn func() error) error { return inNetns(path, fn) }

	for i := range 2 { // idempotent
		if err := in(func() error { return EnsureBridge("initos0", gw) }); err != nil {
			t.Fatalf("EnsureBridge #%d: %v", i+1, err)
		}
	}
	br, err := h.LinkByName("initos0")
	if err != nil {
		t.Fatalf("bridge missing: %v", err)
	}
	if _, ok := br.(*netlink.Bridge); !ok || br.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("initos0 is %s flags %v, want an up bridge", br.Type(), br.Attrs().Flags)
	}
	addrs, err := h.AddrList(br, netlink.FAMILY_V4)
	must(t, err)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.0.1/24" {
		t.Errorf("bridge addresses %v, want exactly 10.88.0.1/24", addrs)
	}

	if err := in(func() error { return CreateTap("vm1", "initos0", 1400) }); err != nil {
		t.Fatalf("CreateTap: %v", err)
	}
	tap, err := h.LinkByName("vm1")
	must(t, err)
	if tt, ok := tap.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tap.Attrs().MTU != 1400 ||
		tap.Attrs().MasterIndex != br.Attrs().Index || tap.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("vm1: %s %+v; want an up tap, MTU 1400, master initos0 (%d)", tap.Type(), tap.Attrs(), br.Attrs().Index)
	}
	if err := in(func() error {
		f, err := OpenTap("vm1")
		if err == nil {
			f.Close()
		}
		return err
	}); err != nil {
		t.Errorf("OpenTap(vm1): %v", err)
	}

	errCases := []struct {
		name string
		fn   func() error
		want error
	}{
		{"tap exists", func() error { return CreateTap("vm1", "initos0", 0) }, ErrExists},
		{"no such bridge", func() error { return CreateTap("vm2", "nobr0", 0) }, netlink.LinkNotFoundError{}},
		{"master not a bridge", func() error { return CreateTap("vm2", "vm1", 0) }, ErrNotBridge},
		{"bridge name taken by a tap", func() error { return EnsureBridge("vm1", gw) }, ErrNotBridge},
		{"IPv6 gateway", func() error {
			return EnsureBridge("initos1", net.IPNet{IP: net.ParseIP("fd00::1"), Mask: net.CIDRMask(64, 128)})
		}, ErrInvalidArgument},
		{"delete a bridge as tap", func() error { return DeleteTap("initos0") }, ErrNotTap},
		{"open a missing tap", func() error { _, err := OpenTap("vm9"); return err }, netlink.LinkNotFoundError{}},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			err := in(c.fn)
			var lnf netlink.LinkNotFoundError
			if _, wantLNF := c.want.(netlink.LinkNotFoundError); (wantLNF && !errors.As(err, &lnf)) || (!wantLNF && !errors.Is(err, c.want)) {
				t.Fatalf("error %v, want %T %v", err, c.want, c.want)
			}
			t.Logf("error: %v", err)
		})
	}
	for _, n := range []string{"vm2", "vm9", "initos1"} {
		if _, err := h.LinkByName(n); err == nil {
			t.Errorf("link %s was left behind by a failed call", n)
		}
	}

	for i := range 2 { // idempotent
		if err := in(func() error { return DeleteTap("vm1") }); err != nil {
			t.Fatalf("DeleteTap #%d: %v", i+1, err)
		}
	}
	if _, err := h.LinkByName("vm1"); err == nil {
		t.Error("vm1 still exists after DeleteTap")
	}
	if _, err := h.LinkByName("initos0"); err != nil {
		t.Errorf("bridge gone after DeleteTap: %v", err)
	}
}
