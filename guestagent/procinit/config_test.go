package procinit

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestConfigRoundTrip(t *testing.T) {
	umask, adj, neg := uint32(0o027), 500, -999
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"empty", Config{}},
		{"an exec", Config{Process: Process{
			Args: []string{"sh", "-c", "echo ünïcode\x00and a NUL"}, Env: []string{"PATH=/bin", "A="}, Cwd: "/root",
			UID: 1000, GID: 1<<32 - 1, AdditionalGids: []uint32{0, 10, 1<<32 - 1}, Umask: &umask,
			Caps:        CapSets{Bounding: 0x800405fb, Effective: 1 << 40, Permitted: 1<<63 | 1, Inheritable: 2, Ambient: 4},
			LastCap:     40,
			Rlimits:     []Rlimit{{"RLIMIT_NOFILE", 7, 1024, 1<<64 - 1}, {"RLIMIT_CORE", 4, 0, 0}},
			OOMScoreAdj: &adj, NoNewPrivileges: true,
		}}},
		{"negative oom_score_adj", Config{Process: Process{Args: []string{"x"}, OOMScoreAdj: &neg}}},
		{"a first process", Config{
			Process: Process{Args: []string{"/init"}, Cwd: "/"},
			Rootfs:  "/run/c/rootfs", Pivot: true, RootPropagation: 1<<14 | 1<<20, Ctty: true, TryCtty: true,
			Console: "/run/c/rootfs/dev/console", MountProc: "/run/c/rootfs/proc",
			ProcMounts: []string{"/run/c/rootfs/proc/meminfo", "/run/c/rootfs/proc/sys/fs"},
			Masked:     []string{"/proc/kcore", "/sys/firmware"}, Readonly: []string{"/proc/sys"},
			Hostname: "h", Sysctls: map[string]string{"kernel.shmmax": "1", "net.ipv4.ip_forward": "", "": "empty name"},
			NewCgroupns: true, CgroupMount: "/run/c/rootfs/sys/fs/cgroup", CgroupReadonly: true,
			Seccomp: bytes.Repeat([]byte{6, 0, 0, 0, 0, 0, 0xff, 0x7f}, 3), SeccompFlags: 1 << 2, UnshareMount: true,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.cfg.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Config
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !reflect.DeepEqual(got, tc.cfg) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.cfg)
			}
			again, err := got.MarshalBinary()
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("encoding the decoded config differs (%v)", err)
			}
		})
	}
}

func TestConfigSysctlsEncodeInOrder(t *testing.T) {
	c := Config{Sysctls: map[string]string{}}
	for _, n := range []string{"z", "a", "m", "b", "y", "c"} {
		c.Sysctls[n] = n
	}
	first, _ := c.MarshalBinary()
	for range 20 {
		if b, _ := c.MarshalBinary(); !bytes.Equal(b, first) {
			t.Fatal("two encodings of one config differ")
		}
	}
}

func TestConfigDecodeErrors(t *testing.T) {
	valid, err := (&Config{Process: Process{Args: []string{"true"}, Env: []string{"PATH=/bin"}}, Masked: []string{"/proc/kcore"}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"nothing", nil, "version: truncated"},
		{"another version", []byte{1}, "version 1, want 2"},
		{"truncated in args", valid[:4], "args: 4 items in 1 bytes: truncated"},
		{"cut short at the end", valid[:len(valid)-1], "unshareMount: truncated"},
		{"left over", append(append([]byte{}, valid...), 0), "1 bytes after the last field"},
		{"a count larger than the input", []byte{configVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}, "args: 4294967295 items in 0 bytes"},
		{"a flag that is not 0 or 1", append([]byte{configVersion, 0, 0, 0, 0, 0, 0}, 2), "umask: flag byte 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.UnmarshalBinary(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("UnmarshalBinary = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// FuzzConfig: no input makes the decoder panic or allocate beyond its
// input, and what it accepts, encoded again, decodes to the same config.
func FuzzConfig(f *testing.F) {
	umask := uint32(0o22)
	for _, c := range []Config{
		{},
		{Process: Process{Args: []string{"true"}, Umask: &umask, Rlimits: []Rlimit{{"RLIMIT_NOFILE", 7, 1, 2}}}, Sysctls: map[string]string{"a": "b"}},
	} {
		b, err := c.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if err := c.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var d Config
		if err := d.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(c, d) {
			t.Errorf("re-encoded config decodes to %+v (%v), want %+v", d, err, c)
		}
	})
}
