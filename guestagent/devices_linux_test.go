package guestagent

import (
	"errors"
	"strings"
	"testing"

	devconfig "github.com/opencontainers/cgroups/devices/config"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

func TestSetupDeviceRules(t *testing.T) {
	s, sys, _ := newTestService(t)
	var gotDir string
	var got []*devconfig.Rule
	s.setDevices = func(dir string, rules []*devconfig.Rule) error {
		gotDir, got = dir, rules
		return nil
	}
	rules := []*agentapi.DeviceRule{
		{Allow: false, Type: "a", Major: -1, Minor: -1, Access: "rwm"},
		{Allow: true, Type: "c", Major: 1, Minor: 3, Access: "rw"},
	}
	if _, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", DeviceRules: rules}); err != nil {
		t.Fatal(err)
	}
	if gotDir != cgroupOf("") || len(got) != 2 {
		t.Fatalf("device program on %q with %d rules, want %q with 2", gotDir, len(got), cgroupOf(""))
	}
	if r := got[0]; r.Allow || r.Type != devconfig.WildcardDevice || r.Permissions != "rwm" {
		t.Errorf("rule 0 %+v", r)
	}
	if r := got[1]; !r.Allow || r.Type != devconfig.CharDevice || r.Major != 1 || r.Minor != 3 || r.Permissions != "rw" {
		t.Errorf("rule 1 %+v", r)
	}

	for _, tc := range []struct {
		rule *agentapi.DeviceRule
		want string
	}{
		{&agentapi.DeviceRule{Type: "x", Major: -1, Minor: -1, Access: "r"}, `type "x"`},
		{&agentapi.DeviceRule{Type: "c", Major: 1, Minor: 3, Access: "rx"}, `access "rx"`},
		{&agentapi.DeviceRule{Type: "c", Major: -2, Minor: 3, Access: "r"}, "major -2"},
	} {
		s, sys, _ := newTestService(t)
		s.setDevices = func(string, []*devconfig.Rule) error { t.Error("a bad rule reached the cgroup"); return nil }
		_, err := s.Setup(ctx5s(t), &agentapi.SetupRequest{RootDevice: "/dev/vda", RootFstype: "btrfs", DeviceRules: []*agentapi.DeviceRule{tc.rule}})
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Setup with %+v = %v, want ErrInvalidArgument naming %s", tc.rule, err, tc.want)
		}
		if left := sys.mountedTargets(); len(left) > 1 { // the VM's cgroup2 stays
			t.Errorf("mounts left: %q", left)
		}
	}
	_ = sys
}
