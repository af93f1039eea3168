package procinit

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestCapabilityBits(t *testing.T) {
	for _, tc := range []struct {
		name string
		bit  int
	}{
		{"CAP_CHOWN", 0},
		{"CAP_KILL", 5},
		{"CAP_SETPCAP", 8},
		{"CAP_NET_ADMIN", 12},
		{"CAP_SYS_ADMIN", 21},
		{"CAP_MKNOD", 27},
		{"CAP_SETFCAP", 31},
		{"CAP_MAC_OVERRIDE", 32},
		{"CAP_CHECKPOINT_RESTORE", 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := CapabilityBits[tc.name]; !ok || got != tc.bit {
				t.Errorf("CapabilityBits[%q] = %d, %v; want %d", tc.name, got, ok, tc.bit)
			}
		})
	}
	if len(CapabilityBits) != unix.CAP_LAST_CAP+1 {
		t.Errorf("%d capability names, want %d (0 to CAP_LAST_CAP)", len(CapabilityBits), unix.CAP_LAST_CAP+1)
	}
	seen := map[int]string{}
	for n, b := range CapabilityBits {
		if other, ok := seen[b]; ok {
			t.Errorf("%s and %s both have bit %d", n, other, b)
		}
		seen[b] = n
	}
}

func TestMaskOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		names   []string
		lastCap int
		want    CapMask
	}{
		{"none", nil, 40, 0},
		{"one", []string{"CAP_KILL"}, 40, 1 << 5},
		{"several", []string{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_AUDIT_WRITE"}, 40, 1<<0 | 1<<12 | 1<<29},
		{"duplicates", []string{"CAP_KILL", "CAP_KILL"}, 40, 1 << 5},
		{"unknown name skipped", []string{"CAP_KILL", "CAP_NOT_A_CAP"}, 40, 1 << 5},
		{"lower case is not a name", []string{"cap_kill", "KILL"}, 40, 0},
		{"newer than the kernel skipped", []string{"CAP_CHECKPOINT_RESTORE", "CAP_BPF", "CAP_SYSLOG"}, 38, 1 << 34},
		{"above 31", []string{"CAP_MAC_ADMIN", "CAP_CHECKPOINT_RESTORE"}, 40, 1<<33 | 1<<40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := maskOf(tc.names, tc.lastCap); got != tc.want {
				t.Errorf("maskOf(%q, %d) = %#x, want %#x", tc.names, tc.lastCap, uint64(got), uint64(tc.want))
			}
		})
	}
}

func TestComputeCapSets(t *testing.T) {
	podmanDefault := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
	const podmanMask CapMask = 0x800405fb
	for _, tc := range []struct {
		name string
		caps *specs.LinuxCapabilities
		want CapSets
	}{
		{"absent is empty", nil, CapSets{}},
		{"empty", &specs.LinuxCapabilities{}, CapSets{}},
		{"podman default", &specs.LinuxCapabilities{
			Bounding: podmanDefault, Effective: podmanDefault, Permitted: podmanDefault,
		}, CapSets{Bounding: podmanMask, Effective: podmanMask, Permitted: podmanMask}},
		{"ambient needs permitted and inheritable", &specs.LinuxCapabilities{
			Permitted:   []string{"CAP_KILL", "CAP_NET_ADMIN", "CAP_CHOWN"},
			Inheritable: []string{"CAP_KILL", "CAP_CHOWN", "CAP_MKNOD"},
			Ambient:     []string{"CAP_KILL", "CAP_NET_ADMIN", "CAP_MKNOD"},
		}, CapSets{Permitted: 1<<5 | 1<<12 | 1<<0, Inheritable: 1<<5 | 1<<0 | 1<<27, Ambient: 1 << 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := computeCapSets(tc.caps, 40); got != tc.want {
				t.Errorf("computeCapSets = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCapData(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets CapSets
		want [2]unix.CapUserData
	}{
		{"empty", CapSets{}, [2]unix.CapUserData{}},
		{"low word", CapSets{Effective: 1 << 5, Permitted: 1<<5 | 1<<31, Inheritable: 1},
			[2]unix.CapUserData{{Effective: 1 << 5, Permitted: 1<<5 | 1<<31, Inheritable: 1}, {}}},
		{"high word", CapSets{Effective: 1 << 32, Permitted: 1<<40 | 1<<32, Inheritable: 1 << 33},
			[2]unix.CapUserData{{}, {Effective: 1, Permitted: 1<<8 | 1, Inheritable: 1 << 1}}},
		{"all of 0 to 40", CapSets{Effective: 1<<41 - 1, Permitted: 1<<41 - 1, Inheritable: 1<<41 - 1},
			[2]unix.CapUserData{
				{Effective: 0xffffffff, Permitted: 0xffffffff, Inheritable: 0xffffffff},
				{Effective: 0x1ff, Permitted: 0x1ff, Inheritable: 0x1ff}}},
		{"bounding and ambient are not capset's", CapSets{Bounding: 1<<41 - 1, Ambient: 1 << 5}, [2]unix.CapUserData{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.sets.capData(); got != tc.want {
				t.Errorf("capData() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
