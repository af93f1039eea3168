package guestagent

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// renderCmdline writes c back as a kernel command line that ParseCmdline
// must read as c again: every key explicit, the program after "--".
func renderCmdline(c *Cmdline) string {
	parts := []string{
		"initos.root=" + c.Root,
		"initos.rootfstype=" + c.RootFSType,
		"initos.mode=" + string(c.Mode),
	}
	if c.Debug {
		parts = append(parts, "initos.debug=1")
	} else {
		parts = append(parts, "initos.debug=0")
	}
	if !c.AllGroups {
		parts = append(parts, "initos.load="+strings.Join(c.Groups, ","))
	}
	if n := c.Net; n != nil {
		xip := n.Addr.String() + ","
		if n.Gateway.IsValid() {
			xip += n.Gateway.String()
		}
		xip += ","
		if n.DNS.IsValid() {
			xip += n.DNS.String()
		}
		xip += ","
		if n.MTU != 0 {
			xip += strconv.Itoa(n.MTU)
		}
		parts = append(parts, "xip="+xip)
	}
	if len(c.Program) > 0 {
		parts = append(parts, "--")
		parts = append(parts, c.Program...)
	}
	return strings.Join(parts, " ")
}

// checkCmdline checks the invariants of a parsed command line.
func checkCmdline(t *testing.T, line string, c *Cmdline) {
	t.Helper()
	hasSpace := func(s string) bool { return strings.IndexFunc(s, unicode.IsSpace) >= 0 }
	if c.Root == "" || hasSpace(c.Root) || c.RootFSType == "" || hasSpace(c.RootFSType) {
		t.Fatalf("ParseCmdline(%q): root %q, rootfstype %q: want non-empty single words", line, c.Root, c.RootFSType)
	}
	switch c.Mode {
	case ModeAgent:
	case ModeSidecar, ModeSwitchRoot:
		if len(c.Program) == 0 {
			t.Fatalf("ParseCmdline(%q): mode %s without a program", line, c.Mode)
		}
	default:
		t.Fatalf("ParseCmdline(%q): mode %q", line, c.Mode)
	}
	if c.AllGroups && c.Groups != nil {
		t.Fatalf("ParseCmdline(%q): all groups and groups %q", line, c.Groups)
	}
	for _, g := range c.Groups {
		if g == "" || strings.Contains(g, ",") || hasSpace(g) {
			t.Fatalf("ParseCmdline(%q): group %q", line, g)
		}
	}
	if c.Program != nil && len(c.Program) == 0 {
		t.Fatalf("ParseCmdline(%q): empty, non-nil program", line)
	}
	for _, a := range c.Program {
		if a == "" || hasSpace(a) {
			t.Fatalf("ParseCmdline(%q): program argument %q", line, a)
		}
	}
	if n := c.Net; n != nil {
		if !n.Addr.IsValid() {
			t.Fatalf("ParseCmdline(%q): invalid address %v", line, n.Addr)
		}
		if n.Gateway.IsValid() && n.Gateway.Is4() != n.Addr.Addr().Is4() {
			t.Fatalf("ParseCmdline(%q): gateway %s not of the family of %s", line, n.Gateway, n.Addr)
		}
		if n.MTU != 0 && !validMTU(n.MTU) {
			t.Fatalf("ParseCmdline(%q): MTU %d", line, n.MTU)
		}
		if rc := n.ResolvConf(); n.DNS.IsValid() != (rc != "") || strings.Count(rc, "\n") > 1 {
			t.Fatalf("ParseCmdline(%q): resolv.conf %q for DNS %v", line, rc, n.DNS)
		}
	}
	_ = c.String()
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"",
		"console=ttyS0 quiet",
		"console=hvc0 initos.root=/dev/vdb initos.rootfstype=ext4 initos.load=virtio,net, initos.debug",
		"initos.load= initos.debug=off initos.mode=agent",
		"initos.mode=sidecar -- /bin/sh -c true",
		"initos.mode=switchroot initos.root=/dev/vda -- /sbin/init --",
		"initos.mode=sidecar --",
		"initos.mode=bogus",
		"initos.root= initos.rootfstype=",
		"initos.debug=maybe",
		"xip=10.0.2.15/24,10.0.2.2,10.0.2.3,1500",
		"xip=fd00::2/64,fd00::1,,9000 xip=192.168.1.2/32",
		"xip=10.0.0.2/8,fe80::1%eth0",
		"xip=10.0.0.2/8,,fe80::1%eth0,68",
		"xip=10.0.0.2/33",
		"xip=10.0.0.2/24,,,65536",
		"xip=10.0.0.2/24,,,,",
		"xip=",
		"\tinitos.root=a=b\ninitos.load=,,x== -- a\v-- b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCmdline(line)
		if err != nil {
			if c != nil {
				t.Fatalf("ParseCmdline(%q) = %+v and error %v", line, c, err)
			}
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ParseCmdline(%q): error %v does not wrap ErrInvalidArgument", line, err)
			}
		} else {
			checkCmdline(t, line, c)
		}

		// Only the words count: the same line with other white space
		// parses the same.
		c2, err2 := ParseCmdline(strings.Join(strings.Fields(line), " "))
		if (err == nil) != (err2 == nil) || err == nil && !reflect.DeepEqual(c, c2) {
			t.Fatalf("ParseCmdline(%q) = %+v, %v; with single spaces %+v, %v", line, c, err, c2, err2)
		}
		if err != nil {
			return
		}

		// What it parsed, written back, parses to the same.
		again := renderCmdline(c)
		c3, err := ParseCmdline(again)
		if err != nil {
			t.Fatalf("ParseCmdline(%q) = %+v; rendered as %q it fails: %v", line, c, again, err)
		}
		if !reflect.DeepEqual(c, c3) {
			t.Fatalf("ParseCmdline(%q) = %+v; rendered as %q it parses to %+v", line, c, again, c3)
		}
	})
}
