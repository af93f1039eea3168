package runtime

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestNamespaces(t *testing.T) {
	ns := func(types ...string) *specs.Spec {
		s := &specs.Spec{Linux: &specs.Linux{}}
		for _, typ := range types {
			n := specs.LinuxNamespace{Type: specs.LinuxNamespaceType(typ)}
			if len(typ) > 5 && typ[len(typ)-5:] == "=path" {
				n = specs.LinuxNamespace{Type: specs.LinuxNamespaceType(typ[:len(typ)-5]), Path: "/proc/42/ns/" + typ[:len(typ)-5]}
			}
			s.Linux.Namespaces = append(s.Linux.Namespaces, n)
		}
		return s
	}
	for _, tc := range []struct {
		name          string
		spec          *specs.Spec
		member        bool
		ownPid        bool
		newNs, joinNs []string
	}{
		{"no linux", &specs.Spec{}, false, false, nil, nil},
		{"runc spec", ns("pid", "network", "ipc", "uts", "mount", "cgroup"), false, true, []string{"ipc", "uts", "mount", "cgroup"}, nil},
		{"podman --pid=host --ipc=host", ns("network", "uts", "mount"), false, false, []string{"uts", "mount"}, nil},
		{"paths share the VM's", ns("pid=path", "uts=path", "ipc=path"), false, false, nil, nil},
		{"pod member", ns("pid", "ipc=path", "uts=path", "network=path", "mount"), true, true, []string{"mount"}, []string{"ipc", "uts"}},
		{"pod member with its own uts", ns("uts", "ipc=path"), true, true, []string{"uts"}, []string{"ipc"}},
		{"pod member sharing the sandbox's PID namespace", ns("pid=path", "ipc=path", "uts=path", "network=path", "mount"), true, false, []string{"mount"}, []string{"ipc", "uts", "pid"}},
		{"pod member, pid path first", ns("pid=path", "uts=path", "ipc=path"), true, false, nil, []string{"uts", "ipc", "pid"}},
		{"pod member without a PID namespace (hostPID, refused by the shim)", ns("ipc=path", "uts=path"), true, true, nil, []string{"ipc", "uts"}},
		{"a path outside a pod: the VM's", ns("pid=path", "mount"), false, false, []string{"mount"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ownPid, newNs, joinNs := guestNamespaces(tc.spec, tc.member)
			if ownPid != tc.ownPid || !reflect.DeepEqual(newNs, tc.newNs) || !reflect.DeepEqual(joinNs, tc.joinNs) {
				t.Errorf("guestNamespaces = %v, %q, %q; want %v, %q, %q", ownPid, newNs, joinNs, tc.ownPid, tc.newNs, tc.joinNs)
			}
		})
	}
}
