package guestagent

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	defaults := func(mod func(c *Cmdline)) *Cmdline {
		c := &Cmdline{AllGroups: true, Root: "/dev/vda", RootFSType: "btrfs", Mode: ModeAgent}
		if mod != nil {
			mod(c)
		}
		return c
	}
	tests := []struct {
		name string
		in   string
		want *Cmdline
	}{
		{"empty", "", defaults(nil)},
		{"kernel args only", "console=ttyS0 panic=-1 quiet tsc_early_khz=2400000\n", defaults(nil)},
		{"unknown initos key ignored", "initos.future=x initos.rootx=1", defaults(nil)},
		{"load groups", "initos.load=mmio,blk,btrfs,console", defaults(func(c *Cmdline) {
			c.AllGroups = false
			c.Groups = []string{"mmio", "blk", "btrfs", "console"}
		})},
		{"load empty means none", "initos.load=", defaults(func(c *Cmdline) { c.AllGroups = false })},
		{"load last wins", "initos.load=pci initos.load=mmio", defaults(func(c *Cmdline) {
			c.AllGroups = false
			c.Groups = []string{"mmio"}
		})},
		{"root and type", "initos.root=/dev/vdb initos.rootfstype=ext4", defaults(func(c *Cmdline) {
			c.Root = "/dev/vdb"
			c.RootFSType = "ext4"
		})},
		{"debug", "initos.debug=1", defaults(func(c *Cmdline) { c.Debug = true })},
		{"debug bare", "initos.debug", defaults(func(c *Cmdline) { c.Debug = true })},
		{"debug off", "initos.debug=1 initos.debug=0", defaults(nil)},
		{"modules share over 9p", "initos.modules=9p", defaults(func(c *Cmdline) { c.Modules = "9p" })},
		{"modules share over virtiofs", "initos.modules=virtiofs", defaults(func(c *Cmdline) { c.Modules = "virtiofs" })},
		{"xip address only", "xip=10.88.0.5/24", defaults(func(c *Cmdline) {
			c.Net = &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24")}
		})},
		{"xip full", "xip=10.88.0.5/24,10.88.0.1,1.1.1.1", defaults(func(c *Cmdline) {
			c.Net = &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24"),
				Gateway: netip.MustParseAddr("10.88.0.1"), DNS: netip.MustParseAddr("1.1.1.1")}
		})},
		{"xip mtu", "xip=10.88.0.5/24,10.88.0.1,,1450", defaults(func(c *Cmdline) {
			c.Net = &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24"), Gateway: netip.MustParseAddr("10.88.0.1"), MTU: 1450}
		})},
		{"xip dns without gateway", "xip=10.88.0.5/24,,10.88.0.1", defaults(func(c *Cmdline) {
			c.Net = &NetConfig{Addr: netip.MustParsePrefix("10.88.0.5/24"), DNS: netip.MustParseAddr("10.88.0.1")}
		})},
		{"program", "quiet initos.mode=sidecar -- /bin/sh -c echo  hi", defaults(func(c *Cmdline) {
			c.Mode = ModeSidecar
			c.Program = []string{"/bin/sh", "-c", "echo", "hi"}
		})},
		{"PID 1 handed off", "initos.pid1=handoff", defaults(func(c *Cmdline) { c.Handoff = true })},
		{"template", "initos.template=1", defaults(func(c *Cmdline) { c.Template = true })},
		{"template off", "initos.template=1 initos.template=0", defaults(nil)},
		{"PID 1 kept", "initos.pid1=handoff initos.pid1=agent", defaults(nil)},
		{"keys after -- belong to the program", "-- /bin/prog initos.mode=switchroot", defaults(func(c *Cmdline) {
			c.Program = []string{"/bin/prog", "initos.mode=switchroot"}
		})},
		{"quotes are not special", `initos.mode=switchroot -- /bin/sh -c "echo hi"`, defaults(func(c *Cmdline) {
			c.Mode = ModeSwitchRoot
			c.Program = []string{"/bin/sh", "-c", `"echo`, `hi"`}
		})},
		{"only the first -- splits", "-- a -- b", defaults(func(c *Cmdline) { c.Program = []string{"a", "--", "b"} })},
		{"trailing --", "quiet --", defaults(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.in)
			if err != nil {
				t.Fatalf("ParseCmdline(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCmdline(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseCmdlineErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"bad mode", "initos.mode=vm"},
		{"sidecar without program", "initos.mode=sidecar"},
		{"switchroot with empty program", "initos.mode=switchroot --"},
		{"bad debug", "initos.debug=maybe"},
		{"bad template", "initos.template=maybe"},
		{"bad pid1", "initos.pid1=yes"},
		{"handoff outside agent mode", "initos.pid1=handoff initos.mode=sidecar -- /bin/sh"},
		{"bad modules transport", "initos.modules=nfs"},
		{"empty modules transport", "initos.modules="},
		{"empty root", "initos.root="},
		{"bare root", "initos.root"},
		{"empty fstype", "initos.rootfstype="},
		{"xip without prefix", "xip=10.0.0.2"},
		{"xip bad address", "xip=10.0.0.300/24"},
		{"xip bad gateway", "xip=10.0.0.2/24,gw"},
		{"xip gateway family", "xip=10.0.0.2/24,fe80::1"},
		{"xip bad dns", "xip=10.0.0.2/24,10.0.0.1,dns"},
		{"xip bad mtu", "xip=10.0.0.2/24,10.0.0.1,1.1.1.1,x"},
		{"xip mtu too small", "xip=10.0.0.2/24,,,67"},
		{"xip too many parts", "xip=10.0.0.2/24,10.0.0.1,1.1.1.1,1500,x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCmdline(tt.in)
			if err == nil {
				t.Fatalf("ParseCmdline(%q) = %+v, want an error", tt.in, c)
			}
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("ParseCmdline(%q) error %v does not wrap ErrInvalidArgument", tt.in, err)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	var none *NetConfig
	if got := none.ResolvConf(); got != "" {
		t.Errorf("nil config: got %q", got)
	}
	n := &NetConfig{Addr: netip.MustParsePrefix("10.0.0.2/24"), DNS: netip.MustParseAddr("10.0.0.1")}
	if got, want := n.ResolvConf(), "nameserver 10.0.0.1\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
