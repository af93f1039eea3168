package procinit

import "testing"

func TestSysctlPath(t *testing.T) {
	for _, tt := range []struct {
		name, want string
	}{
		{"net.ipv4.ip_unprivileged_port_start", "/proc/sys/net/ipv4/ip_unprivileged_port_start"},
		{"kernel.shmmax", "/proc/sys/kernel/shmmax"},
		{"fs.mqueue.msg_max", "/proc/sys/fs/mqueue/msg_max"},
		{"net.ipv4.conf.all.forwarding", "/proc/sys/net/ipv4/conf/all/forwarding"},
		{"", ""},
		{"net.ipv4/../../vm", ""},
		{"net..ipv4", ""},
		{".net", ""},
		{"net.", ""},
		{"net.\x00", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SysctlPath(tt.name)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("SysctlPath(%q) = %q, want an error", tt.name, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("SysctlPath(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		})
	}
}
