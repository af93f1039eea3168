package runtime

import (
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestCgroupMounts(t *testing.T) {
	cg := func(opts ...string) specs.Mount {
		return specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: opts}
	}
	proc := specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}
	tests := []struct {
		name string
		in   []specs.Mount
		want []specs.Mount
	}{
		{"cgroup v2 host", []specs.Mount{proc, cg("nosuid", "ro")}, []specs.Mount{proc, cg("nosuid", "ro")}},
		{"podman systemd on a cgroup v1 host: bind of the host's named hierarchy", []specs.Mount{
			proc, cg("nosuid", "ro"),
			{Destination: "/sys/fs/cgroup/systemd", Type: "bind", Source: "/sys/fs/cgroup/systemd", Options: []string{"bind", "nodev", "rprivate"}},
		}, []specs.Mount{proc, cg("nosuid", "rw")}},
		{"a cgroup-typed v1 hierarchy", []specs.Mount{
			cg("ro"), {Destination: "/sys/fs/cgroup/systemd/", Type: "cgroup", Source: "cgroup", Options: []string{"name=systemd"}},
		}, []specs.Mount{cg("rw")}},
		{"read-only sub-hierarchies stay read-only", []specs.Mount{
			cg("ro"), {Destination: "/sys/fs/cgroup/memory", Type: "bind", Source: "/sys/fs/cgroup/memory", Options: []string{"bind", "ro"}},
		}, []specs.Mount{cg("ro")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := fmt.Sprint(guestCgroupMounts(tt.in)), fmt.Sprint(tt.want); got != want {
				t.Errorf("got %s\nwant %s", got, want)
			}
		})
	}
}

// TestDelegatedCgroupsGetANamespace: a container given its cgroups (a
// writable cgroup mount) with a mount namespace gets a cgroup namespace
// even when the spec (podman's on a cgroup v1 host) asks for none.
func TestDelegatedCgroupsGetANamespace(t *testing.T) {
	spec := func(opt string) *specs.Spec {
		return &specs.Spec{
			Mounts: []specs.Mount{{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{opt}}},
			Linux:  &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}}},
		}
	}
	for opt, want := range map[string]string{"ro": "[mount]", "rw": "[mount cgroup]"} {
		if _, newNs, _ := guestNamespaces(spec(opt), false); fmt.Sprint(newNs) != want {
			t.Errorf("cgroup mount %s: new namespaces %v, want %s", opt, newNs, want)
		}
	}
}
