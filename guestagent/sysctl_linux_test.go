package guestagent

import (
	"errors"
	"strings"
	"testing"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"golang.org/x/sys/unix"
)

func TestSetupWritesSysctls(t *testing.T) {
	s, sys, _ := newTestService(t)
	req := &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", Sysctls: map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "0",
		"kernel.shmmax":                       "68719476736",
		"fs.mqueue.msg_max":                   "20",
	}}
	if _, err := s.Setup(ctx5s(t), req); err != nil {
		t.Fatal(err)
	}
	got := sys.Calls("write /proc/sys/")
	want := []string{
		`write /proc/sys/fs/mqueue/msg_max "20"`,
		`write /proc/sys/kernel/shmmax "68719476736"`,
		`write /proc/sys/net/ipv4/ip_unprivileged_port_start "0"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("writes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSetupSysctlError(t *testing.T) {
	s, sys, _ := newTestService(t)
	sys.failWrite = map[string]error{"/proc/sys/net/ipv4/ip_unprivileged_port_start": unix.EINVAL}
	_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
		ContainerId: "", Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "-5"}})
	if err == nil || !errors.Is(err, unix.EINVAL) ||
		!strings.Contains(err.Error(), `setting sysctl "net.ipv4.ip_unprivileged_port_start" to "-5"`) {
		t.Fatalf("Setup = %v, want an error naming the sysctl and the value", err)
	}
	// A failed Setup leaves nothing mounted and may be retried.
	sys.failWrite = nil
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs"}); err != nil {
		t.Fatalf("Setup after a failed one: %v", err)
	}
}

func TestSetupRefusesBadSysctlName(t *testing.T) {
	s, sys, _ := newTestService(t)
	_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs",
		Sysctls: map[string]string{"net.ipv4/../../../etc/passwd": "x"}})
	if err == nil || !strings.Contains(err.Error(), `sysctl "net.ipv4/../../../etc/passwd"`) {
		t.Fatalf("Setup = %v, want an error naming the sysctl", err)
	}
	if w := sys.Calls("write /proc/"); len(w) != 0 {
		t.Errorf("writes: %q", w)
	}
}

func TestNamespacedSysctls(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ipc, uts bool
		want     bool
	}{
		{"kernel.shmmax", true, false, true},
		{"fs.mqueue.msg_max", true, false, true},
		{"kernel.sem", false, true, false},
		{"kernel.domainname", false, true, true},
		{"kernel.domainname", true, false, false},
		{"net.ipv4.ip_forward", true, true, false},
	} {
		if got := namespacedSysctls(tc.ipc, tc.uts)(tc.name); got != tc.want {
			t.Errorf("namespacedSysctls(ipc %v, uts %v)(%q) = %v, want %v", tc.ipc, tc.uts, tc.name, got, tc.want)
		}
	}
}
