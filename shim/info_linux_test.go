package shim

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// TestInfoFeatures: `shim -info` carries the runtime's features as
// containerd's CRI reads them (typeurl Any of runtime-spec's Features):
// "rro" among the mount options says recursive read-only mounts work.
func TestInfoFeatures(t *testing.T) {
	t.Setenv(ConfigEnv, "")
	m := &Manager{name: RuntimeName}
	info, err := m.Info(context.Background(), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if info.Features == nil {
		t.Fatal("Info has no features")
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatalf("unmarshalling the features (%s): %v", info.Features.GetTypeUrl(), err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features of type %T, want *features.Features", v)
	}
	if !slices.Contains(f.MountOptions, "rro") {
		t.Errorf("mountOptions %q lack rro", f.MountOptions)
	}
	if f.OCIVersionMin == "" || f.OCIVersionMax == "" {
		t.Errorf("features without OCI versions: %+v", f)
	}
}
