package procinit

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestProcessOf(t *testing.T) {
	umask, adj := uint32(0o77), -5
	for _, tc := range []struct {
		name    string
		p       *specs.Process
		want    Process
		wantErr string
	}{
		{"none", nil, Process{}, "no process"},
		{"plain", &specs.Process{Args: []string{"true"}, Env: []string{"A=1"}, Cwd: "/"},
			Process{Args: []string{"true"}, Env: []string{"A=1"}, Cwd: "/", LastCap: 40}, ""},
		{"user, capabilities, rlimits", &specs.Process{
			Args: []string{"sh"}, Cwd: "/w",
			User:         specs.User{UID: 1, GID: 2, AdditionalGids: []uint32{3}, Umask: &umask},
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "CAP_BPF"}, Permitted: []string{"CAP_KILL"}, Inheritable: []string{"CAP_KILL"}, Ambient: []string{"CAP_KILL", "CAP_CHOWN"}},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}},
			OOMScoreAdj:  &adj, NoNewPrivileges: true,
		}, Process{
			Args: []string{"sh"}, Cwd: "/w", UID: 1, GID: 2, AdditionalGids: []uint32{3}, Umask: &umask,
			Caps:    CapSets{Bounding: 1<<5 | 1<<39, Permitted: 1 << 5, Inheritable: 1 << 5, Ambient: 1 << 5},
			LastCap: 40, Rlimits: []Rlimit{{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, 10, 20}}, OOMScoreAdj: &adj, NoNewPrivileges: true,
		}, ""},
		{"unknown rlimit", &specs.Process{Args: []string{"sh"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_FOO"}}},
			Process{}, `rlimit "RLIMIT_FOO" is not a Linux resource limit`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProcessOf(tc.p, 40)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ProcessOf = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ProcessOf =\n %+v, want\n %+v", got, tc.want)
			}
		})
	}
}
