package runtime

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// agentMountOptions reads the guest agent's source: the string keys of the
// map literals named in maps, and the strings parseMountOptions compares
// opt with (tmpcopyup, notmpcopyup).
func agentMountOptions(t *testing.T, maps ...string) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join("..", "guestagent", "mountopts_linux.go"), nil, 0)
	if err != nil {
		t.Fatalf("reading the guest agent's mount options: %v", err)
	}
	out := map[string][]string{}
	unquote := func(n ast.Node) string {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return ""
		}
		s, _ := strconv.Unquote(lit.Value)
		return s
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, name := range n.Names {
				for _, m := range maps {
					if name.Name != m || i >= len(n.Values) {
						continue
					}
					cl, ok := n.Values[i].(*ast.CompositeLit)
					if !ok {
						t.Fatalf("%s is not a composite literal", m)
					}
					for _, e := range cl.Elts {
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							if k := unquote(kv.Key); k != "" {
								out[m] = append(out[m], k)
							}
						}
					}
				}
			}
		case *ast.BinaryExpr:
			if id, ok := n.X.(*ast.Ident); ok && id.Name == "opt" && n.Op == token.EQL {
				if s := unquote(n.Y); s != "" {
					out["opt=="] = append(out["opt=="], s)
				}
			}
		}
		return true
	})
	for _, m := range maps {
		if len(out[m]) == 0 {
			t.Fatalf("found no entries of %s in the guest agent", m)
		}
	}
	return out
}

// TestFeaturesMountOptionsMatchAgent: features lists exactly what the
// agent recognizes, and nothing it refuses.
func TestFeaturesMountOptionsMatchAgent(t *testing.T) {
	src := agentMountOptions(t, "mountFlags", "propagationFlags", "recursiveAttrs", "unsupportedMountOptions")
	var want []string
	for _, k := range []string{"mountFlags", "propagationFlags", "recursiveAttrs", "opt=="} {
		want = append(want, src[k]...)
	}
	sort.Strings(want)
	got := Features().MountOptions
	if !sort.StringsAreSorted(got) {
		t.Errorf("mountOptions are not sorted: %v", got)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mountOptions\n got %v\nwant %v (from guestagent/mountopts_linux.go)", got, want)
	}
	refused := map[string]bool{}
	for _, o := range src["unsupportedMountOptions"] {
		refused[o] = true
	}
	for _, o := range got {
		if refused[o] {
			t.Errorf("mountOptions lists %q, which the agent refuses", o)
		}
	}
}

func TestFeatures(t *testing.T) {
	f := Features()
	no := false
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{"ociVersionMin", f.OCIVersionMin, "1.0.0"},
		{"ociVersionMax", f.OCIVersionMax, specs.Version},
		{"hooks", f.Hooks, []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}},
		{"namespaces", f.Linux.Namespaces, []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"}},
		{"capabilities unknown", f.Linux.Capabilities, []string(nil)},
		{"no cgroup manager", f.Linux.Cgroup, &features.Cgroup{V1: &no, V2: &no, Systemd: &no, SystemdUser: &no, Rdma: &no}},
		{"no seccomp", f.Linux.Seccomp, &features.Seccomp{Enabled: &no}},
		{"no apparmor", f.Linux.Apparmor, &features.Apparmor{Enabled: &no}},
		{"no selinux", f.Linux.Selinux, &features.Selinux{Enabled: &no}},
		{"no intel rdt", f.Linux.IntelRdt, &features.IntelRdt{Enabled: &no}},
		{"no idmap mounts", f.Linux.MountExtensions, &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}}},
		{"no net devices", f.Linux.NetDevices, &features.NetDevices{Enabled: &no}},
		{"vmm annotation", f.Annotations, map[string]string{"io.github.initos-runtime.vmm": "qemu,cloud-hypervisor"}},
		{"not runc's annotation", f.Annotations["org.opencontainers.runc.version"], ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %#v, want %#v", tc.got, tc.want)
			}
		})
	}

	// Callers may change what they get without changing the next result.
	f.Hooks[0], f.MountOptions[0], f.Annotations["x"] = "x", "x", "x"
	g := Features()
	if g.Hooks[0] != HookPrestart || g.MountOptions[0] == "x" || len(g.Annotations) != 1 {
		t.Error("Features results share memory")
	}

	// JSON: the documented field names, and no null where the spec wants
	// "absent" for unknown.
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	linux, _ := m["linux"].(map[string]any)
	if _, ok := linux["capabilities"]; ok {
		t.Errorf("capabilities present in %s", b)
	}
	if seccomp, _ := linux["seccomp"].(map[string]any); seccomp["enabled"] != false {
		t.Errorf("seccomp.enabled is %v, want false", seccomp["enabled"])
	}
}

// TestFeaturesVersionsLoad: "The runtime MUST accept this value as the
// ociVersion property of config.json" holds for both ends of the range.
func TestFeaturesVersionsLoad(t *testing.T) {
	f := Features()
	for _, v := range []string{f.OCIVersionMin, f.OCIVersionMax} {
		t.Run(v, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
				t.Fatal(err)
			}
			s := DefaultSpec()
			s.Version = v
			if err := WriteSpec(dir, s); err != nil {
				t.Fatal(err)
			}
			if _, err := bundle.Load(dir); err != nil {
				t.Errorf("ociVersion %s: %v", v, err)
			}
		})
	}
	// A version outside the range is refused, so the test can tell.
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	s := DefaultSpec()
	s.Version = fmt.Sprintf("%d.0.0", specs.VersionMajor+1)
	if err := WriteSpec(dir, s); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Load(dir); err == nil {
		t.Errorf("ociVersion %s was accepted", s.Version)
	}
}
