package network

import (
	"net"
	"strconv"
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
	return XIPArg(a.IP, a.Gateway, a.DNS)
}

// XIPArg formats `xip=IP/PREFIX[,GW[,DNS]]` (docs/contracts.md): the gateway
// field is left empty when only a DNS server is given.
func XIPArg(ip net.IPNet, gw, dns net.IP) string {
	ones, _ := ip.Mask.Size()
	s := "xip=" + ip.IP.String() + "/" + strconv.Itoa(ones)
	switch {
	case dns != nil && gw != nil:
		s += "," + gw.String() + "," + dns.String()
	case dns != nil:
		s += ",," + dns.String()
	case gw != nil:
		s += "," + gw.String()
	}
	return s
}
