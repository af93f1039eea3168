package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestMain doubles as the helper process of TestIPAMConcurrentProcesses:
// with INITOS_IPAM_HELPER_DIR set, the binary allocates one address and
// prints it instead of running the tests.
func TestMain(m *testing.M) {
	if dir := os.Getenv("INITOS_IPAM_HELPER_DIR"); dir != "" {
		ipam := &IPAM{Dir: dir, Subnet: mustCIDR(os.Getenv("INITOS_IPAM_HELPER_SUBNET"))}
		ip, err := ipam.Allocate(os.Getenv("INITOS_IPAM_HELPER_OWNER"), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(ip.String())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mustCIDR(s string) net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return *n
}

func TestIPAM(t *testing.T) {
	dead := func(string) bool { return false }
	type step struct {
		op, owner string
		alive     func(string) bool
		want      string // address, or "" for no check
		wantErr   error
	}
	tests := []struct {
		name   string
		subnet string
		steps  []step
	}{
		{"skips network and gateway", "10.88.0.0/24", []step{
			{op: "alloc", owner: "a", want: "10.88.0.2/24"},
			{op: "alloc", owner: "b", want: "10.88.0.3/24"},
		}},
		{"same owner same address", "10.88.0.0/24", []step{
			{op: "alloc", owner: "a", want: "10.88.0.2/24"},
			{op: "alloc", owner: "a", want: "10.88.0.2/24"},
		}},
		{"exhaustion skips broadcast", "10.88.0.0/29", []step{ // .2 .. .6
			{op: "alloc", owner: "a", want: "10.88.0.2/29"},
			{op: "alloc", owner: "b", want: "10.88.0.3/29"},
			{op: "alloc", owner: "c", want: "10.88.0.4/29"},
			{op: "alloc", owner: "d", want: "10.88.0.5/29"},
			{op: "alloc", owner: "e", want: "10.88.0.6/29"},
			{op: "alloc", owner: "f", wantErr: ErrExhausted},
		}},
		{"reuse after release", "10.88.0.0/30", []step{ // only .2
			{op: "alloc", owner: "a", want: "10.88.0.2/30"},
			{op: "alloc", owner: "b", wantErr: ErrExhausted},
			{op: "release", owner: "a"},
			{op: "release", owner: "a"}, // idempotent
			{op: "alloc", owner: "b", want: "10.88.0.2/30"},
		}},
		{"reclaim dead owner", "10.88.0.0/30", []step{
			{op: "alloc", owner: "a", want: "10.88.0.2/30"},
			{op: "alloc", owner: "b", alive: func(o string) bool { return o == "a" }, wantErr: ErrExhausted},
			{op: "alloc", owner: "b", alive: dead, want: "10.88.0.2/30"},
		}},
		{"bad owner", "10.88.0.0/24", []step{
			{op: "alloc", owner: "", wantErr: ErrInvalidArgument},
			{op: "alloc", owner: "a\nb", wantErr: ErrInvalidArgument},
			{op: "release", owner: "", wantErr: ErrInvalidArgument},
		}},
		{"IPv6 subnet", "fd00::/64", []step{{op: "alloc", owner: "a", wantErr: ErrInvalidArgument}}},
		{"/31 subnet", "10.0.0.0/31", []step{{op: "alloc", owner: "a", wantErr: ErrInvalidArgument}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &IPAM{Dir: t.TempDir(), Subnet: mustCIDR(tt.subnet)}
			for i, s := range tt.steps {
				var got net.IPNet
				var err error
				if s.op == "alloc" {
					got, err = m.Allocate(s.owner, s.alive)
				} else {
					err = m.Release(s.owner)
				}
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d %s(%q): error %v, want %v", i, s.op, s.owner, err, s.wantErr)
				}
				if err != nil && s.wantErr == ErrExhausted && !strings.Contains(err.Error(), tt.subnet) {
					t.Errorf("step %d: exhaustion error %q does not name the subnet %s", i, err, tt.subnet)
				}
				if s.want != "" && got.String() != s.want {
					t.Fatalf("step %d %s(%q) = %s, want %s", i, s.op, s.owner, got.String(), s.want)
				}
			}
			// Only lease files and the lock: no temporary files left behind.
			entries, _ := os.ReadDir(m.Dir)
			for _, e := range entries {
				if e.Name() != "lock" && net.ParseIP(e.Name()) == nil {
					t.Errorf("unexpected file %q in the IPAM directory", e.Name())
				}
			}
		})
	}
}

func TestIPAMLeaseFile(t *testing.T) {
	m := &IPAM{Dir: filepath.Join(t.TempDir(), "leases"), Subnet: mustCIDR("10.88.0.0/24")}
	ip, err := m.Allocate("ctr-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(m.Dir, ip.IP.String()))
	if err != nil || strings.TrimSpace(string(b)) != "ctr-1" {
		t.Fatalf("lease file %s: %q, %v; want the owner id", ip.IP, b, err)
	}
	gw, err := m.Gateway()
	if err != nil || gw.String() != "10.88.0.1/24" {
		t.Errorf("Gateway() = %s, %v; want 10.88.0.1/24", gw.String(), err)
	}
}

func checkDistinct(t *testing.T, ips []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, ip := range ips {
		if ip == "" || seen[ip] {
			t.Fatalf("addresses not distinct: %q", ips)
		}
		seen[ip] = true
	}
}

func TestIPAMConcurrentGoroutines(t *testing.T) {
	m := &IPAM{Dir: t.TempDir(), Subnet: mustCIDR("10.88.0.0/24")}
	ips := make([]string, 10)
	var wg sync.WaitGroup
	for i := range ips {
		wg.Go(func() {
			ip, err := m.Allocate(fmt.Sprintf("owner-%d", i), nil)
			if err != nil {
				t.Error(err)
				return
			}
			ips[i] = ip.String()
		})
	}
	wg.Wait()
	checkDistinct(t, ips)
}

func TestIPAMConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	cmds := make([]*exec.Cmd, 10)
	outs := make([]strings.Builder, 10)
	for i := range cmds {
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), "INITOS_IPAM_HELPER_DIR="+dir, "INITOS_IPAM_HELPER_SUBNET=10.88.0.0/24",
			fmt.Sprintf("INITOS_IPAM_HELPER_OWNER=proc-%d", i))
		c.Stdout, c.Stderr = &outs[i], os.Stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = c
	}
	ips := make([]string, 10)
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
		ips[i] = strings.TrimSpace(outs[i].String())
	}
	checkDistinct(t, ips)
}
