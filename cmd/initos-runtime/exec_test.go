package main

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestAddCaps(t *testing.T) {
	base := []string{"CAP_KILL"}
	for _, tc := range []struct {
		name string
		in   *specs.LinuxCapabilities
		caps []string
		want *specs.LinuxCapabilities
	}{
		{"none added", &specs.LinuxCapabilities{Bounding: base}, nil, &specs.LinuxCapabilities{Bounding: base}},
		{"no sets yet", nil, []string{"CAP_NET_ADMIN"}, &specs.LinuxCapabilities{
			Bounding: []string{"CAP_NET_ADMIN"}, Effective: []string{"CAP_NET_ADMIN"}, Permitted: []string{"CAP_NET_ADMIN"}}},
		{"added to the spec's, not ambient without inheritable", &specs.LinuxCapabilities{Bounding: base, Effective: base, Permitted: base, Ambient: base},
			[]string{"CAP_NET_ADMIN"}, &specs.LinuxCapabilities{
				Bounding: []string{"CAP_KILL", "CAP_NET_ADMIN"}, Effective: []string{"CAP_KILL", "CAP_NET_ADMIN"},
				Permitted: []string{"CAP_KILL", "CAP_NET_ADMIN"}, Ambient: base}},
		{"ambient with inheritable", &specs.LinuxCapabilities{Inheritable: base}, []string{"CAP_SYS_TIME"}, &specs.LinuxCapabilities{
			Bounding: []string{"CAP_SYS_TIME"}, Effective: []string{"CAP_SYS_TIME"}, Permitted: []string{"CAP_SYS_TIME"},
			Inheritable: base, Ambient: []string{"CAP_SYS_TIME"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &specs.Process{Capabilities: tc.in}
			var before []string
			if tc.in != nil {
				before = append(before, tc.in.Bounding...)
			}
			addCaps(p, tc.caps)
			if !reflect.DeepEqual(p.Capabilities, tc.want) {
				t.Errorf("capabilities = %+v, want %+v", p.Capabilities, tc.want)
			}
			if tc.in != nil && !reflect.DeepEqual(tc.in.Bounding, before) {
				t.Errorf("the spec's own set changed: %v", tc.in.Bounding)
			}
		})
	}
}
