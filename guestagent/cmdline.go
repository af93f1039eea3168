package guestagent

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Mode is the run mode chosen by initos.mode=.
type Mode string

// The run modes of docs/contracts.md.
const (
	ModeAgent      Mode = "agent"
	ModeSidecar    Mode = "sidecar"
	ModeSwitchRoot Mode = "switchroot"
)

// Defaults of the command line keys.
const (
	DefaultRoot       = "/dev/vda"
	DefaultRootFSType = "btrfs"
)

// NetConfig is the xip= argument: IP/PREFIX[,GW[,DNS[,MTU]]].
type NetConfig struct {
	Addr    netip.Prefix
	Gateway netip.Addr // invalid when absent
	DNS     netip.Addr // invalid when absent
	MTU     int        // 0: the NIC's default
}

// ResolvConf is the resolv.conf the DNS server of xip= asks for, or "".
func (n *NetConfig) ResolvConf() string {
	if n == nil || !n.DNS.IsValid() {
		return ""
	}
	return "nameserver " + n.DNS.String() + "\n"
}

// Cmdline is what the agent takes from /proc/cmdline.
type Cmdline struct {
	// AllGroups is true when initos.load= is absent: every module loads.
	AllGroups bool
	// Groups are the module groups of initos.load=, when present.
	Groups     []string
	Root       string
	RootFSType string
	Mode       Mode
	Debug      bool
	Net        *NetConfig // nil without xip=
	// Handoff (initos.pid1=handoff): PID 1 starts the serving agent as a
	// child and later becomes the container's first process, so that it
	// is PID 1 of the VM (the engines' switch-root mode, handoff_linux.go).
	Handoff bool
	// Modules is how the kernel's modules share is attached (initos.modules=:
	// "9p" or "virtiofs", the module group of its transport); "" without
	// one.
	Modules string
	// Template (initos.template=1): this boot is a VM template's, saved
	// once its agent is ready; the agent prepares what each clone's first
	// process would otherwise start under the clone's clock (a spare
	// process helper, spare_linux.go).
	Template bool
	// Program is everything after the first "--", split on spaces.
	Program []string
}

// ParseCmdline parses a kernel command line. Arguments are split on white
// space; quoting is not supported. Unknown keys are ignored (the kernel's
// own arguments share the line). A key given twice takes the last value.
func ParseCmdline(s string) (*Cmdline, error) {
	c := &Cmdline{
		AllGroups:  true,
		Root:       DefaultRoot,
		RootFSType: DefaultRootFSType,
		Mode:       ModeAgent,
	}
	var err error
	fields := strings.Fields(s)
	for i, f := range fields {
		if f == "--" {
			if rest := fields[i+1:]; len(rest) > 0 {
				c.Program = rest
			}
			break
		}
		key, value, hasValue := strings.Cut(f, "=")
		switch key {
		case "initos.load":
			c.AllGroups = false
			c.Groups = nil
			for _, g := range strings.Split(value, ",") {
				if g != "" {
					c.Groups = append(c.Groups, g)
				}
			}
		case "initos.root":
			if value == "" {
				return nil, errorf(ErrInvalidArgument, "kernel command line: initos.root= is empty")
			}
			c.Root = value
		case "initos.rootfstype":
			if value == "" {
				return nil, errorf(ErrInvalidArgument, "kernel command line: initos.rootfstype= is empty")
			}
			c.RootFSType = value
		case "initos.mode":
			switch m := Mode(value); m {
			case ModeAgent, ModeSidecar, ModeSwitchRoot:
				c.Mode = m
			default:
				return nil, errorf(ErrInvalidArgument, "kernel command line: initos.mode=%q: want agent, sidecar or switchroot", value)
			}
		case "initos.pid1":
			switch value {
			case "handoff":
				c.Handoff = true
			case "agent":
				c.Handoff = false
			default:
				return nil, errorf(ErrInvalidArgument, "kernel command line: initos.pid1=%q: want handoff or agent", value)
			}
		case "initos.debug":
			if c.Debug, err = boolArg(key, value, hasValue); err != nil {
				return nil, err
			}
		case "initos.template":
			if c.Template, err = boolArg(key, value, hasValue); err != nil {
				return nil, err
			}
		case "initos.modules":
			if value != "9p" && value != "virtiofs" {
				return nil, errorf(ErrInvalidArgument, "kernel command line: initos.modules=%q: want 9p or virtiofs", value)
			}
			c.Modules = value
		case "xip":
			n, err := parseXIP(value)
			if err != nil {
				return nil, err
			}
			c.Net = n
		}
	}
	if c.Handoff && c.Mode != ModeAgent {
		return nil, errorf(ErrInvalidArgument, "kernel command line: initos.pid1=handoff needs initos.mode=agent, not %s", c.Mode)
	}
	if c.Mode != ModeAgent && len(c.Program) == 0 {
		return nil, errorf(ErrInvalidArgument, "kernel command line: initos.mode=%s needs a program after \"-- \"", c.Mode)
	}
	return c, nil
}

// boolArg is the value of a boolean key: 1 or 0 (true/false, yes/no,
// on/off too); a bare key is true.
func boolArg(key, value string, hasValue bool) (bool, error) {
	switch value {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	if hasValue {
		return false, errorf(ErrInvalidArgument, "kernel command line: %s=%q: want 1 or 0", key, value)
	}
	return true, nil
}

// parseXIP parses IP/PREFIX[,GW[,DNS]]; empty GW or DNS parts mean none.
func parseXIP(v string) (*NetConfig, error) {
	bad := func(format string, args ...any) error {
		return errorf(ErrInvalidArgument, "kernel command line: xip=%q: "+format, append([]any{v}, args...)...)
	}
	parts := strings.Split(v, ",")
	if len(parts) > 4 {
		return nil, bad("want IP/PREFIX[,GW[,DNS[,MTU]]]")
	}
	gw := ""
	if len(parts) > 1 {
		gw = parts[1]
	}
	n, err := newNetConfig(parts[0], gw, bad)
	if err != nil {
		return nil, err
	}
	// The DNS server may be of either family.
	if len(parts) > 2 && parts[2] != "" {
		if n.DNS, err = netip.ParseAddr(parts[2]); err != nil {
			return nil, bad("dns: %w", err)
		}
	}
	if len(parts) > 3 && parts[3] != "" {
		if n.MTU, err = strconv.Atoi(parts[3]); err != nil || !validMTU(n.MTU) {
			return nil, bad("mtu %q: want a number from 68 to 65535", parts[3])
		}
	}
	return n, nil
}

// newNetConfig checks an interface's address (IP/PREFIX) and its optional
// gateway, which must be of the address's family, as xip= and
// ConfigureNetwork give them; bad makes the caller's error.
func newNetConfig(address, gateway string, bad func(format string, args ...any) error) (*NetConfig, error) {
	addr, err := netip.ParsePrefix(address)
	if err != nil {
		return nil, bad("address: %w", err)
	}
	n := &NetConfig{Addr: addr}
	if gateway != "" {
		if n.Gateway, err = netip.ParseAddr(gateway); err != nil {
			return nil, bad("gateway: %w", err)
		}
		if n.Gateway.Is4() != addr.Addr().Is4() {
			return nil, bad("gateway %s is not of the address's family", n.Gateway)
		}
	}
	return n, nil
}

// validMTU: RFC 791's minimum to a jumbo frame's 64 KiB.
func validMTU(mtu int) bool { return mtu >= 68 && mtu <= 65535 }

// String renders the parsed line for the debug log.
func (c *Cmdline) String() string {
	load := "all"
	if !c.AllGroups {
		load = strings.Join(c.Groups, ",")
	}
	net := "none"
	if c.Net != nil {
		net = c.Net.Addr.String()
		if c.Net.Gateway.IsValid() {
			net += " via " + c.Net.Gateway.String()
		}
		if c.Net.DNS.IsValid() {
			net += " dns " + c.Net.DNS.String()
		}
	}
	mode := string(c.Mode)
	if c.Handoff {
		mode += " (PID 1 handed off)"
	}
	modules := c.Modules
	if modules == "" {
		modules = "none"
	}
	return fmt.Sprintf("mode=%s root=%s (%s) load=%s modules=%s net=%s debug=%t program=%q",
		mode, c.Root, c.RootFSType, load, modules, net, c.Debug, c.Program)
}
