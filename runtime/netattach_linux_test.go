package runtime

import (
	"errors"
	"net"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/network"
)

func TestAttachNetwork(t *testing.T) {
	orig := attachNetworkFunc
	t.Cleanup(func() { attachNetworkFunc = orig })
	var asked []string
	attachNetworkFunc = func(path, tap string) (*network.Attachment, error) {
		asked = append(asked, path+" "+tap)
		switch path {
		case "/run/netns/lo-only":
			return nil, network.ErrNoInterface
		case "/run/netns/broken":
			return nil, errors.New("boom")
		}
		return &network.Attachment{NetnsPath: path, Tap: tap, IP: net.IPNet{IP: net.IPv4(10, 88, 0, 7), Mask: net.CIDRMask(16, 32)}}, nil
	}
	spec := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
	}
	netns := func(p string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p}
	}
	for _, tc := range []struct {
		name    string
		s       *specs.Spec
		wantAtt bool
		wantErr error
	}{
		{"host network is refused", spec(specs.LinuxNamespace{Type: specs.PIDNamespace}), false, ErrUnsupported},
		{"no linux section is the host's network", &specs.Spec{}, false, ErrUnsupported},
		{"new empty namespace: loopback only", spec(netns("")), false, nil},
		{"engine namespace", spec(netns("/run/netns/cni-1")), true, nil},
		{"engine namespace with loopback only", spec(netns("/run/netns/lo-only")), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			att, err := attachNetwork(tc.s)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if (att != nil) != tc.wantAtt {
				t.Fatalf("attachment %+v, want one: %v", att, tc.wantAtt)
			}
			if att != nil && att.Tap != guestTap {
				t.Errorf("tap %q, want %q", att.Tap, guestTap)
			}
		})
	}
	if _, err := attachNetwork(spec(netns("/run/netns/broken"))); err == nil || err.Error() != "boom" {
		t.Errorf("attach failure: %v", err)
	}
}
