package procinit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CapabilityBits maps the runtime-spec's capability names to their bits.
var CapabilityBits = map[string]int{
	"CAP_CHOWN":              unix.CAP_CHOWN,
	"CAP_DAC_OVERRIDE":       unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH":    unix.CAP_DAC_READ_SEARCH,
	"CAP_FOWNER":             unix.CAP_FOWNER,
	"CAP_FSETID":             unix.CAP_FSETID,
	"CAP_KILL":               unix.CAP_KILL,
	"CAP_SETGID":             unix.CAP_SETGID,
	"CAP_SETUID":             unix.CAP_SETUID,
	"CAP_SETPCAP":            unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE":    unix.CAP_LINUX_IMMUTABLE,
	"CAP_NET_BIND_SERVICE":   unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST":      unix.CAP_NET_BROADCAST,
	"CAP_NET_ADMIN":          unix.CAP_NET_ADMIN,
	"CAP_NET_RAW":            unix.CAP_NET_RAW,
	"CAP_IPC_LOCK":           unix.CAP_IPC_LOCK,
	"CAP_IPC_OWNER":          unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE":         unix.CAP_SYS_MODULE,
	"CAP_SYS_RAWIO":          unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT":         unix.CAP_SYS_CHROOT,
	"CAP_SYS_PTRACE":         unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT":          unix.CAP_SYS_PACCT,
	"CAP_SYS_ADMIN":          unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT":           unix.CAP_SYS_BOOT,
	"CAP_SYS_NICE":           unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE":       unix.CAP_SYS_RESOURCE,
	"CAP_SYS_TIME":           unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG":     unix.CAP_SYS_TTY_CONFIG,
	"CAP_MKNOD":              unix.CAP_MKNOD,
	"CAP_LEASE":              unix.CAP_LEASE,
	"CAP_AUDIT_WRITE":        unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL":      unix.CAP_AUDIT_CONTROL,
	"CAP_SETFCAP":            unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE":       unix.CAP_MAC_OVERRIDE,
	"CAP_MAC_ADMIN":          unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG":             unix.CAP_SYSLOG,
	"CAP_WAKE_ALARM":         unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND":      unix.CAP_BLOCK_SUSPEND,
	"CAP_AUDIT_READ":         unix.CAP_AUDIT_READ,
	"CAP_PERFMON":            unix.CAP_PERFMON,
	"CAP_BPF":                unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// maskOf is the set of the named capabilities with a bit at most lastCap.
// As runc, it skips unknown names and those the kernel lacks (runc warns).
func maskOf(names []string, lastCap int) CapMask {
	var m CapMask
	for _, n := range names {
		if b, ok := CapabilityBits[n]; ok && b <= lastCap {
			m |= 1 << uint(b)
		}
	}
	return m
}

// computeCapSets turns the spec's capabilities into masks; nil (no
// capabilities in the spec) is every set empty, as runc does. Ambient keeps
// only what is both permitted and inheritable: the kernel refuses to raise
// anything else, and runc ignores that failure.
func computeCapSets(c *specs.LinuxCapabilities, lastCap int) CapSets {
	if c == nil {
		return CapSets{}
	}
	s := CapSets{
		Bounding:    maskOf(c.Bounding, lastCap),
		Effective:   maskOf(c.Effective, lastCap),
		Permitted:   maskOf(c.Permitted, lastCap),
		Inheritable: maskOf(c.Inheritable, lastCap),
		Ambient:     maskOf(c.Ambient, lastCap),
	}
	s.Ambient &= s.Permitted & s.Inheritable
	return s
}

// capData is the two 32-bit words of capset for the three sets.
func (s CapSets) capData() [2]unix.CapUserData {
	var d [2]unix.CapUserData
	for i := range d {
		shift := uint(32 * i)
		d[i] = unix.CapUserData{
			Effective:   uint32(s.Effective >> shift),
			Permitted:   uint32(s.Permitted >> shift),
			Inheritable: uint32(s.Inheritable >> shift),
		}
	}
	return d
}

// LastCapability is the highest capability the running kernel knows:
// /proc/sys/kernel/cap_last_cap, or, without /proc, the highest one
// PR_CAPBSET_READ accepts.
func LastCapability() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	n := 0
	for c := 1; c < 64; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil {
			break
		}
		n = c
	}
	return n
}

// dropBounding drops from the calling thread's bounding set every
// capability up to lastCap that s.Bounding does not hold. It needs
// CAP_SETPCAP, so it runs before the user switch.
func dropBounding(s CapSets, lastCap int) error {
	for c := 0; c <= lastCap; c++ {
		if s.Bounding&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// applyCaps sets the calling thread's effective, permitted and inheritable
// sets, then its ambient set (cleared first), after the user switch.
func applyCaps(s CapSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := s.capData()
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting the capabilities (effective %#x, permitted %#x, inheritable %#x): %w",
			uint64(s.Effective), uint64(s.Permitted), uint64(s.Inheritable), err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing the ambient capabilities: %w", err)
	}
	for c := 0; c < 64; c++ {
		if s.Ambient&(1<<uint(c)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raising ambient capability %d: %w", c, err)
		}
	}
	return nil
}

// AllCapabilityNames is every capability name the agent knows, for a
// process that keeps them all (the command line's program).
func AllCapabilityNames() []string {
	names := make([]string, 0, len(CapabilityBits))
	for n := range CapabilityBits {
		names = append(names, n)
	}
	return names
}
