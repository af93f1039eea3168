package runtime

import (
	"errors"
	"net"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
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

// TestNetworkRequest: what a clone's ConfigureNetwork carries is what a
// booted VM's xip= would have said, with the NIC's MAC.
func TestNetworkRequest(t *testing.T) {
	ip := net.IPNet{IP: net.IPv4(10, 88, 0, 5).To4(), Mask: net.CIDRMask(16, 32)}
	mac, _ := net.ParseMAC("0a:58:0a:58:00:05")
	tests := []struct {
		name string
		got  *agentapi.NetworkRequest
		want *agentapi.NetworkRequest
	}{
		{"engine", networkRequest(&network.Attachment{IP: ip, Gateway: net.IPv4(10, 88, 0, 1), MTU: 1400, MAC: mac}),
			&agentapi.NetworkRequest{Address: "10.88.0.5/16", Gateway: "10.88.0.1", Mtu: 1400, Mac: "0a:58:0a:58:00:05"}},
		{"engine with a name server", networkRequest(&network.Attachment{IP: ip, DNS: net.IPv4(10, 88, 0, 53)}),
			&agentapi.NetworkRequest{Address: "10.88.0.5/16", Dns: "10.88.0.53"}},
		{"bridge", (&bridgeLease{ip: net.IPNet{IP: net.IPv4(10, 77, 0, 9).To4(), Mask: net.CIDRMask(24, 32)}, gw: net.IPv4(10, 77, 0, 1), tap: "itap0"}).networkRequest(),
			&agentapi.NetworkRequest{Address: "10.77.0.9/24", Gateway: "10.77.0.1", Dns: "10.77.0.1", Mac: "02:49:0a:4d:00:09"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !proto.Equal(tt.got, tt.want) {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}
