package guestagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

func TestParseNetworkRequest(t *testing.T) {
	tests := []struct {
		name    string
		req     *agentapi.NetworkRequest
		want    string // the NetConfig and MAC as "addr gw mtu mac"
		wantErr string
	}{
		{"full", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Gateway: "10.88.0.1", Mtu: 1450, Mac: "0a:58:0a:58:00:05"},
			"10.88.0.5/16 10.88.0.1 1450 0a:58:0a:58:00:05", ""},
		{"address only", &agentapi.NetworkRequest{Address: "10.88.0.5/16"}, "10.88.0.5/16 invalid IP 0 ", ""},
		{"ipv6", &agentapi.NetworkRequest{Address: "fd00::5/64", Gateway: "fd00::1"}, "fd00::5/64 fd00::1 0 ", ""},
		{"no address", &agentapi.NetworkRequest{}, "", "address"},
		{"address without prefix", &agentapi.NetworkRequest{Address: "10.88.0.5"}, "", "address"},
		{"bad gateway", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Gateway: "gw"}, "", "gateway"},
		{"gateway of another family", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Gateway: "fd00::1"}, "", "family"},
		{"mtu too small", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Mtu: 67}, "", "mtu 67"},
		{"mtu too large", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Mtu: 65536}, "", "mtu 65536"},
		{"bad mac", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Mac: "nope"}, "", "mac"},
		{"multicast mac", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Mac: "01:00:5e:00:00:01"}, "", "unicast"},
		{"zero mac", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Mac: "00:00:00:00:00:00"}, "", "unicast"},
		{"long mac", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Mac: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}, "", "unicast"},
		{"bad dns", &agentapi.NetworkRequest{Address: "10.88.0.5/16", Dns: "ns1"}, "", "dns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, mac, err := parseNetworkRequest(tt.req)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "eth0") {
					t.Fatalf("err %v, want an invalid argument naming eth0 and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join([]string{n.Addr.String(), n.Gateway.String(), strconv.Itoa(n.MTU), mac.String()}, " ")
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// newLateNetService is a Service whose late network is fake: module
// groups are recorded, eth0 appears after appearAfter lookups and has no
// carrier for downFor more (1<<30: never).
func newLateNetService(t *testing.T, appearAfter, downFor int, loadErr error) (*Service, *fakeNetlink, *[]string) {
	t.Helper()
	s, _, _ := newTestService(t)
	nl := &fakeNetlink{appearAfter: appearAfter, downFor: downFor}
	var loaded []string
	s.net = &lateNet{
		loadGroup: func(g string) error {
			loaded = append(loaded, g)
			return loadErr
		},
		nl:   nl,
		wait: 10 * time.Second,
	}
	if appearAfter >= 1<<30 || downFor >= 1<<30 {
		// A wait that must run out: short. One that must not: as long as
		// a busy machine may need (50 ms failed once under load).
		s.net.wait = 50 * time.Millisecond
	}
	return s, nl, &loaded
}

func TestConfigureNetwork(t *testing.T) {
	req := &agentapi.NetworkRequest{Address: "10.88.0.5/16", Gateway: "10.88.0.1", Mtu: 1450, Mac: "0a:58:0a:58:00:05"}
	tests := []struct {
		name        string
		req         *agentapi.NetworkRequest
		appearAfter int
		downFor     int
		loadErr     error
		wantErr     error
		wantCalls   []string
		wantLoaded  []string
	}{
		{"configured", req, 2, 3, nil, nil, []string{
			"mac eth0 0a:58:0a:58:00:05", "mtu eth0 1450", "addr eth0 10.88.0.5/16", "up eth0", "route dev 2 via 10.88.0.1 dst <nil>",
		}, []string{"net"}},
		{"no mac, no gateway, no mtu", &agentapi.NetworkRequest{Address: "10.88.0.5/16"}, 0, 0, nil, nil,
			[]string{"addr eth0 10.88.0.5/16", "up eth0"}, []string{"net"}},
		{"eth0 never appears", req, 1 << 30, 0, nil, ErrNotFound, nil, []string{"net"}},
		{"no carrier", req, 0, 1 << 30, nil, ErrFailedPrecondition, []string{
			"mac eth0 0a:58:0a:58:00:05", "mtu eth0 1450", "addr eth0 10.88.0.5/16", "up eth0", "route dev 2 via 10.88.0.1 dst <nil>",
		}, []string{"net"}},
		{"driver fails to load", req, 0, 0, errors.New("finit_module: no such device"), ErrFailedPrecondition, nil, []string{"net"}},
		{"bad request loads nothing", &agentapi.NetworkRequest{Address: "x"}, 0, 0, nil, ErrInvalidArgument, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, nl, loaded := newLateNetService(t, tt.appearAfter, tt.downFor, tt.loadErr)
			_, err := s.ConfigureNetwork(context.Background(), tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "eth0") {
				t.Errorf("error %q does not name eth0", err)
			}
			if !reflect.DeepEqual(nl.calls, tt.wantCalls) {
				t.Errorf("netlink calls %q, want %q", nl.calls, tt.wantCalls)
			}
			if !reflect.DeepEqual(*loaded, tt.wantLoaded) {
				t.Errorf("module groups loaded %q, want %q", *loaded, tt.wantLoaded)
			}
		})
	}

	// Once configured, the network stays as it is.
	s, nl, _ := newLateNetService(t, 0, 0, nil)
	if _, err := s.ConfigureNetwork(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	calls := len(nl.calls)
	if _, err := s.ConfigureNetwork(context.Background(), req); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("second ConfigureNetwork: %v, want %v", err, ErrAlreadyExists)
	}
	if len(nl.calls) != calls {
		t.Errorf("second ConfigureNetwork touched the NIC: %q", nl.calls[calls:])
	}
	// A name server reaches the resolv.conf of containers set up after.
	s, sys, _ := newTestService(t)
	s.net.loadGroup, s.net.nl = func(string) error { return nil }, &fakeNetlink{}
	if got := s.resolvConf(); got != "" {
		t.Errorf("resolv.conf before ConfigureNetwork: %q", got)
	}
	if _, err := s.ConfigureNetwork(context.Background(), &agentapi.NetworkRequest{Address: "10.77.0.5/24", Gateway: "10.77.0.1", Dns: "10.77.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("write %s/etc/resolv.conf %q", testRootfs, "nameserver 10.77.0.1\n")
	if got := sys.Calls("write " + testRootfs + "/etc/resolv.conf"); !reflect.DeepEqual(got, []string{want}) {
		t.Errorf("the container's resolv.conf: %q, want %q", got, want)
	}
	// A failed attempt can be retried.
	s, _, _ = newLateNetService(t, 1<<30, 0, nil)
	if _, err := s.ConfigureNetwork(context.Background(), req); !errors.Is(err, ErrNotFound) {
		t.Fatalf("first attempt: %v", err)
	}
	s.net.nl = &fakeNetlink{}
	if _, err := s.ConfigureNetwork(context.Background(), req); err != nil {
		t.Errorf("retry: %v", err)
	}
}

func TestLoadGroups(t *testing.T) {
	dir := t.TempDir()
	order := "virtio_ring.ko mmio\nfailover.ko net\nnet_failover.ko net\nvirtio_net.ko net\nbtrfs.ko btrfs\n"
	if err := os.WriteFile(filepath.Join(dir, "load.order"), []byte(order), 0o644); err != nil {
		t.Fatal(err)
	}
	var loaded []string
	load := func(path string) error {
		loaded = append(loaded, filepath.Base(path))
		return nil
	}
	sel, total, err := loadGroups(dir, false, []string{"net"}, load, nil)
	if err != nil || sel != 3 || total != 5 {
		t.Fatalf("loadGroups = %d, %d, %v; want 3 of 5", sel, total, err)
	}
	if want := []string{"failover.ko", "net_failover.ko", "virtio_net.ko"}; !reflect.DeepEqual(loaded, want) {
		t.Errorf("loaded %q, want %q", loaded, want)
	}
	if _, total, err := loadGroups(t.TempDir(), false, []string{"net"}, load, nil); !errors.Is(err, os.ErrNotExist) || total != 0 {
		t.Errorf("without load.order: total %d, err %v; want 0 and not exist", total, err)
	}
}
