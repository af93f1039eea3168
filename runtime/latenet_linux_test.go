package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/network"
)

// stubBridge makes bridgeExists report exists for the test.
func stubBridge(t *testing.T, exists bool) {
	orig := bridgeExists
	t.Cleanup(func() { bridgeExists = orig })
	bridgeExists = func(string) bool { return exists }
}

func netnsSpec(ns ...specs.LinuxNamespace) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
}

func TestPrepareMonitor(t *testing.T) {
	newNet := specs.LinuxNamespace{Type: specs.NetworkNamespace}
	engineNet := specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/netns-1"}
	for _, tc := range []struct {
		name    string
		spec    *specs.Spec
		bridge  bool
		env     []string // the command's env before (nil: inherit)
		wantNet bool
	}{
		{"new namespace: the monitor's own", netnsSpec(newNet), false, nil, true},
		{"new namespace in bridge mode: the host's", netnsSpec(newNet), true, nil, false},
		{"engine's namespace: the host's", netnsSpec(engineNet), false, nil, false},
		{"no network namespace: the host's", netnsSpec(specs.LinuxNamespace{Type: specs.PIDNamespace}), false, nil, false},
		{"no linux section: the host's", &specs.Spec{}, false, nil, false},
		{"a caller's value never reaches the monitor", netnsSpec(engineNet), false, []string{"A=1", monitorNetnsEnv + "=own"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stubBridge(t, tc.bridge)
			c := testConfig(t)
			if got := wantsOwnNetns(c, tc.spec); got != tc.wantNet {
				t.Errorf("wantsOwnNetns = %v, want %v", got, tc.wantNet)
			}
			cmd := exec.Command("/bin/true")
			cmd.Env = tc.env
			prepareMonitor(cmd, c, tc.spec)
			flags := cmd.SysProcAttr.Cloneflags
			if flags&monitorCloneFlags != monitorCloneFlags {
				t.Errorf("clone flags %#x lack the PID and mount namespaces", flags)
			}
			if got := flags&syscall.CLONE_NEWNET != 0; got != tc.wantNet {
				t.Errorf("CLONE_NEWNET %v, want %v", got, tc.wantNet)
			}
			want := monitorNetnsEnv + "=inherited"
			if tc.wantNet {
				want = monitorNetnsEnv + "=own"
			}
			// exec.Cmd keeps the last value of a variable.
			var last string
			for _, kv := range cmd.Env {
				if strings.HasPrefix(kv, monitorNetnsEnv+"=") {
					last = kv
				}
			}
			if last != want {
				t.Errorf("monitor env has %q, want %q", last, want)
			}
			if tc.env == nil && len(cmd.Env) < 2 {
				t.Errorf("env %q: the inherited environment was dropped", cmd.Env)
			}
		})
	}
}

// stubLateNetwork replaces the late network's netlink side effects.
type stubLateNetwork struct {
	linkErr  error
	att      *network.Attachment
	links    int
	detached []string
}

func (s *stubLateNetwork) install(t *testing.T) {
	origCreate, origLink, origDetach := createTapFunc, linkTapFunc, detachFunc
	t.Cleanup(func() { createTapFunc, linkTapFunc, detachFunc = origCreate, origLink, origDetach })
	createTapFunc = func(ns, tap string, mtu int) error {
		t.Errorf("the real tap creation ran in a unit test (%s %s)", ns, tap)
		return errors.New("no netlink in unit tests")
	}
	linkTapFunc = func(ns, tap string) (*network.Attachment, error) {
		s.links++
		if s.linkErr != nil {
			return nil, s.linkErr
		}
		a := *s.att
		a.NetnsPath, a.Tap = ns, tap
		return &a, nil
	}
	detachFunc = func(a *network.Attachment) error {
		s.detached = append(s.detached, a.Tap+" "+a.Iface)
		return nil
	}
}

func engineAttachment() *network.Attachment {
	return &network.Attachment{
		Iface:   "eth0",
		IP:      net.IPNet{IP: net.IPv4(10, 88, 0, 5).To4(), Mask: net.CIDRMask(16, 32)},
		Gateway: net.IPv4(10, 88, 0, 1).To4(),
		MTU:     1400,
		MAC:     net.HardwareAddr{0x0a, 0x58, 0x0a, 0x58, 0, 5},
	}
}

func TestBootLateNetwork(t *testing.T) {
	stubBridge(t, false)
	origAttach := attachNetworkFunc
	t.Cleanup(func() { attachNetworkFunc = origAttach })
	attachNetworkFunc = func(path, tap string) (*network.Attachment, error) { return nil, network.ErrNoInterface }
	const baseLoad = "initos.load=mmio,blk,btrfs,console "

	for _, tc := range []struct {
		name     string
		netns    string // the spec's network namespace path
		ownNetns bool   // the monitor has a namespace of its own
		lateErr  error
		wantNIC  bool
		wantErr  string
	}{
		{"own namespace: a NIC on the tap, no net modules", "", true, nil, true, ""},
		{"no own namespace: loopback only", "", false, nil, false, ""},
		{"engine's namespace: not late", "/run/netns/netns-1", true, nil, false, ""},
		{"tap creation fails", "", true, errors.New("creating tap \"initos-tap0\": operation not permitted"), false, `container "c1": creating tap`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := &stubLateNetwork{att: engineAttachment()}
			stub.install(t)
			h := newFakeHost(t)
			c := testConfig(t)
			d := h.deps()
			made := 0
			if tc.ownNetns {
				d.lateNetwork = func() (*lateNetwork, error) {
					made++
					if tc.lateErr != nil {
						return nil, tc.lateErr
					}
					return &lateNetwork{nsPath: "/proc/self/ns/net", tap: guestTap, mac: randomMAC()}, nil
				}
			}
			b := loadBundle(t, func(s *specs.Spec) {
				s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: tc.netns}}
			})
			inst, err := boot(context.Background(), c, b, "c1", mkStateDir(t, c, "c1"), false, d)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("boot error %v, want one containing %q", err, tc.wantErr)
				}
				if h.vmCount() != 0 {
					t.Errorf("%d VMs made after the tap failed", h.vmCount())
				}
				h.assertNothingLeft(c)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg := h.vmCfgs[0]
			if !strings.HasPrefix(cfg.Cmdline, baseLoad) || strings.Contains(cfg.Cmdline, "xip=") {
				t.Errorf("cmdline %q: want %q… (no net group) and no xip=", cfg.Cmdline, baseLoad)
			}
			if tc.wantNIC {
				if len(cfg.NICs) != 1 || cfg.NICs[0].Tap != guestTap || cfg.NICs[0].MAC != inst.late.mac.String() || cfg.Netns != "" {
					t.Errorf("NICs %+v netns %q; want one on %s with MAC %s in the monitor's namespace", cfg.NICs, cfg.Netns, guestTap, inst.late.mac)
				}
				if mac, err := net.ParseMAC(cfg.NICs[0].MAC); err != nil || mac[0]&1 != 0 || mac[0]&2 == 0 {
					t.Errorf("NIC MAC %q: want a locally administered unicast MAC", cfg.NICs[0].MAC)
				}
			} else if len(cfg.NICs) != 0 || inst.late != nil {
				t.Errorf("NICs %+v, late %+v; want none", cfg.NICs, inst.late)
			}
			if tc.netns != "" && made != 0 {
				t.Errorf("the late tap was made for an engine's namespace")
			}
			if err := inst.Shutdown(context.Background(), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			wantDetached := []string(nil)
			if tc.wantNIC {
				wantDetached = []string{guestTap + " "}
			}
			if !reflect.DeepEqual(stub.detached, wantDetached) {
				t.Errorf("detached %q, want %q", stub.detached, wantDetached)
			}
			h.assertNothingLeft(c)
		})
	}
}

func TestAttachLateNetwork(t *testing.T) {
	wantReq := &agentapi.NetworkRequest{Address: "10.88.0.5/16", Gateway: "10.88.0.1", Mtu: 1400, Mac: "0a:58:0a:58:00:05"}
	newInst := func(a *fakeAgent, late bool) *Instance {
		inst := &Instance{ID: "c1", Agent: a, exited: make(chan struct{})}
		if late {
			inst.late = &lateNetwork{nsPath: "/proc/self/ns/net", tap: guestTap, mac: randomMAC()}
		}
		return inst
	}
	for _, tc := range []struct {
		name      string
		late      bool
		linkErr   error
		att       *network.Attachment
		netErr    error
		wantErr   string
		wantLinks int
		wantReqs  []*agentapi.NetworkRequest
	}{
		{"no late network", false, nil, engineAttachment(), nil, "", 0, nil},
		{"engine added nothing (--network none)", true, fmt.Errorf("network namespace \"/proc/self/ns/net\": %w: found only loopback", network.ErrNoInterface), nil, nil, "", 1, nil},
		{"engine's interface", true, nil, engineAttachment(), nil, "", 1, []*agentapi.NetworkRequest{wantReq}},
		{"no gateway, no MAC", true, nil, &network.Attachment{Iface: "eth0", IP: net.IPNet{IP: net.IPv4(10, 0, 0, 2).To4(), Mask: net.CIDRMask(24, 32)}, MTU: 1500}, nil, "", 1,
			[]*agentapi.NetworkRequest{{Address: "10.0.0.2/24", Mtu: 1500}}},
		{"two interfaces", true, fmt.Errorf("network namespace \"/proc/self/ns/net\": %w: eth0 10.88.0.5/16, eth1 10.89.0.5/16", network.ErrAmbiguousInterface), nil, nil,
			`connecting container "c1" to its network`, 1, nil},
		{"guest fails", true, nil, engineAttachment(), errors.New("eth0 did not appear within 10s"),
			`configuring the network of container "c1" in the guest (10.88.0.5/16 on eth0): eth0 did not appear`, 1, []*agentapi.NetworkRequest{wantReq}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := &stubLateNetwork{att: tc.att, linkErr: tc.linkErr}
			stub.install(t)
			a := newFakeAgent()
			a.netErr = tc.netErr
			inst := newInst(a, tc.late)
			err := inst.attachLateNetwork(context.Background())
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if stub.links != tc.wantLinks {
				t.Errorf("%d LinkTap calls, want %d", stub.links, tc.wantLinks)
			}
			if !reflect.DeepEqual(a.networks, tc.wantReqs) {
				t.Errorf("ConfigureNetwork requests %v, want %v", a.networks, tc.wantReqs)
			}
			if err == nil {
				// Done: a second call does nothing more.
				links, reqs := stub.links, len(a.networks)
				if err := inst.attachLateNetwork(context.Background()); err != nil || (tc.wantReqs != nil && (stub.links != links || len(a.networks) != reqs)) {
					t.Errorf("second call: %v, %d links, %d requests", err, stub.links-links, len(a.networks)-reqs)
				}
			}
		})
	}

	// After the guest failed, a retry configures the guest again without
	// linking twice.
	stub := &stubLateNetwork{att: engineAttachment()}
	stub.install(t)
	a := newFakeAgent()
	a.netErr = errors.New("transient")
	inst := newInst(a, true)
	if err := inst.attachLateNetwork(context.Background()); err == nil {
		t.Fatal("first attempt succeeded")
	}
	a.netErr = nil
	if err := inst.attachLateNetwork(context.Background()); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if stub.links != 1 || len(a.networks) != 2 {
		t.Errorf("%d links and %d requests, want 1 and 2", stub.links, len(a.networks))
	}
	if err := inst.late.remove(); err != nil || !reflect.DeepEqual(stub.detached, []string{guestTap + " eth0"}) {
		t.Errorf("remove: %v, detached %q; want the link's tap and eth0's qdisc", err, stub.detached)
	}
}
