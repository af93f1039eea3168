package network

import (
	"net"
	"strconv"
	"strings"
)

// Attachment is a tap joined to the engine's interface inside a container's
// network namespace by tc mirred redirects. The guest must use MAC and IP.
type Attachment struct {
	NetnsPath string           // the namespace, e.g. /run/netns/cni-... or /proc/PID/ns/net
	Tap       string           // the tap created in it
	Iface     string           // the engine's interface, e.g. eth0
	IP        net.IPNet        // the interface's IPv4 address and prefix, for the guest
	Gateway   net.IP           // the default gateway on Iface, nil when there is none
	MTU       int              // the interface's MTU (the tap has the same)
	MAC       net.HardwareAddr // the interface's MAC, for the guest's NIC
	DNS       net.IP           // optional name server for the guest; not read from the namespace
}

// KernelArg is the xip= kernel argument (docs/contracts.md) for the guest.
func (a *Attachment) KernelArg() string {
	return XIPArg(a.IP, a.Gateway, a.DNS, a.MTU)
}

// defaultMTU is the guest NIC's MTU unless xip= names another.
const defaultMTU = 1500

// XIPArg formats `xip=IP/PREFIX[,GW[,DNS[,MTU]]]` (docs/contracts.md):
// empty fields stand for absent ones; trailing ones are left out, and so
// is an MTU of 0 or 1500 (the guest's default).
func XIPArg(ip net.IPNet, gw, dns net.IP, mtu int) string {
	ones, _ := ip.Mask.Size()
	fields := []string{ip.IP.String() + "/" + strconv.Itoa(ones), "", "", ""}
	if gw != nil {
		fields[1] = gw.String()
	}
	if dns != nil {
		fields[2] = dns.String()
	}
	if mtu > 0 && mtu != defaultMTU {
		fields[3] = strconv.Itoa(mtu)
	}
	for len(fields) > 1 && fields[len(fields)-1] == "" {
		fields = fields[:len(fields)-1]
	}
	return "xip=" + strings.Join(fields, ",")
}
