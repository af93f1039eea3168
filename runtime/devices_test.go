package runtime

import (
	"fmt"
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// TestDeviceRulesCommon: the engines' default device rules (every device
// denied; podman's, containerd's, nerdctl's) are agentapi.CommonDeviceRules,
// whose program a template's agent has loaded.
func TestDeviceRulesCommon(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}}}
	got, want := deviceRules(s), agentapi.CommonDeviceRules()
	if len(got) != len(want) {
		t.Fatalf("%d rules, want %d: %v", len(got), len(want), got)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("rule %d: %v, want %v", i, got[i], want[i])
		}
	}
}

func TestDeviceRules(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	if r := deviceRules(&specs.Spec{Linux: &specs.Linux{}}); r != nil {
		t.Errorf("no rules in the spec: %v, want no filter", r)
	}
	s := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: i64(10), Minor: i64(229), Access: "rw"},
		{Allow: true, Type: "b", Major: i64(8)},
	}}}}
	r := deviceRules(s)
	if len(r) != 3+len(agentapi.AlwaysAllowedDevices()) {
		t.Fatalf("%d rules, want the spec's 3 and the %d always allowed", len(r), len(agentapi.AlwaysAllowedDevices()))
	}
	for i, want := range []string{"false a -1:-1 rwm", "true c 10:229 rw", "true b 8:-1 rwm"} {
		if got := ruleString(r[i]); got != want {
			t.Errorf("rule %d = %s, want %s", i, got, want)
		}
	}
	if got := ruleString(r[len(r)-1]); got != "true c 136:-1 rwm" {
		t.Errorf("last rule %s, want the ptys', after the spec's", got)
	}
}

func ruleString(r interface {
	GetAllow() bool
	GetType() string
	GetMajor() int64
	GetMinor() int64
	GetAccess() string
}) string {
	return fmt.Sprintf("%v %s %d:%d %s", r.GetAllow(), r.GetType(), r.GetMajor(), r.GetMinor(), r.GetAccess())
}

func TestSpecDevices(t *testing.T) {
	mode := os.FileMode(0o620)
	uid, gid := uint32(5), uint32(6)
	s := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{
		{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
		{Path: "/dev/x", Type: "b", Major: 8, Minor: 1, FileMode: &mode, UID: &uid, GID: &gid},
	}}}
	got := specDevices(s)
	if len(got) != 2 || got[0].Mode != 0o666 || got[0].Major != 10 || got[0].Minor != 229 ||
		got[1].Mode != 0o620 || got[1].Uid != 5 || got[1].Gid != 6 || got[1].Type != "b" {
		t.Errorf("specDevices = %v", got)
	}
}
