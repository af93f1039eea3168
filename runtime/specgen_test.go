package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// jsonDiff lists the paths ("linux.namespaces[1].type") where a and b, two
// decoded JSON values, differ. A value present on one side only is one path.
func jsonDiff(path string, a, b any) []string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return []string{path}
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		var out []string
		for k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out = append(out, jsonDiff(p, av[k], bv[k])...)
		}
		return out
	case []any:
		bv, ok := b.([]any)
		if !ok {
			return []string{path}
		}
		var out []string
		for i := 0; i < max(len(av), len(bv)); i++ {
			var x, y any
			if i < len(av) {
				x = av[i]
			}
			if i < len(bv) {
				y = bv[i]
			}
			out = append(out, jsonDiff(path+"["+strconv.Itoa(i)+"]", x, y)...)
		}
		return out
	default:
		if !reflect.DeepEqual(a, b) {
			return []string{path}
		}
		return nil
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

func lookupJSON(v any, path string) (any, bool) {
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[name]; !ok {
			return nil, false
		}
		if idx != "" {
			i, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			l, ok := v.([]any)
			if !ok || i >= len(l) {
				return nil, false
			}
			v = l[i]
		}
	}
	return v, true
}

// TestDefaultSpecMatchesRunc compares DefaultSpec with the output of the
// installed `runc spec`, path by path. Every difference must be one that
// DefaultSpec's comment explains.
func TestDefaultSpecMatchesRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("needs runc in PATH to compare with `runc spec`")
	}
	// Fields runc writes and DefaultSpec leaves out: they must be absent.
	var leftOut []string
	// Fields whose values differ on purpose.
	changed := []string{"ociVersion", "hostname"}
	dir := t.TempDir()
	args := []string{"spec", "--bundle", dir}
	if out, err := exec.Command(runc, args...).CombinedOutput(); err != nil {
		t.Fatalf("runc %v: %v: %s", args, err, out)
	}
	runcJSON, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := json.Marshal(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	theirs, mine := decodeJSON(t, runcJSON), decodeJSON(t, ours)

	allowed := append(append([]string{}, leftOut...), changed...)
	var unexpected []string
	for _, p := range jsonDiff("", theirs, mine) {
		ok := false
		for _, a := range allowed {
			if p == a || strings.HasPrefix(p, a+".") || strings.HasPrefix(p, a+"[") {
				ok = true
			}
		}
		if !ok {
			runcV, _ := lookupJSON(theirs, p)
			ourV, _ := lookupJSON(mine, p)
			unexpected = append(unexpected, fmt.Sprintf("%s: runc %v, ours %v", p, runcV, ourV))
		}
	}
	sort.Strings(unexpected)
	for _, u := range unexpected {
		t.Errorf("differs from runc spec: %s", u)
	}
	for _, p := range leftOut {
		if _, ok := lookupJSON(mine, p); ok {
			t.Errorf("%s should be left out", p)
		}
	}
	for _, p := range changed {
		if v, ok := lookupJSON(mine, p); !ok || v == "" {
			t.Errorf("%s is missing", p)
		}
	}
}

func TestDefaultSpecValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func(s *specs.Spec) string
	}{
		{"version", func(s *specs.Spec) string {
			if s.Version != specs.Version {
				return "ociVersion " + s.Version
			}
			return ""
		}},
		{"readonly rootfs", func(s *specs.Spec) string {
			if s.Root == nil || s.Root.Path != "rootfs" || !s.Root.Readonly {
				return fmt.Sprintf("root %+v", s.Root)
			}
			return ""
		}},
		{"devpts gid=5", func(s *specs.Spec) string {
			if !hasOption(s.Mounts[2].Options, "gid=5") {
				return fmt.Sprintf("devpts options %v", s.Mounts[2].Options)
			}
			return ""
		}},
		{"no user namespace, no mappings", func(s *specs.Spec) string {
			if s.Linux.UIDMappings != nil || s.Linux.GIDMappings != nil {
				return "has id mappings"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg := tc.check(DefaultSpec()); msg != "" {
				t.Error(msg)
			}
		})
	}
	// Each call returns its own spec.
	a, b := DefaultSpec(), DefaultSpec()
	a.Mounts[0].Options = append(a.Mounts[0].Options, "ro")
	a.Process.Args[0] = "changed"
	if len(b.Mounts[0].Options) != 0 || b.Process.Args[0] != "sh" {
		t.Error("DefaultSpec results share memory")
	}
}

func TestWriteSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the bundle dir
		spec    *specs.Spec
		wantErr string
		is      error
	}{
		{name: "writes", setup: func(t *testing.T, dir string) string { return dir }, spec: DefaultSpec()},
		{name: "refuses to overwrite", spec: DefaultSpec(),
			setup: func(t *testing.T, dir string) string {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("keep me"), 0o644); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: "File config.json exists. Remove it first", is: fs.ErrExist},
		{name: "refuses a dangling symlink too", spec: DefaultSpec(),
			setup: func(t *testing.T, dir string) string {
				if err := os.Symlink(filepath.Join(dir, "elsewhere"), filepath.Join(dir, "config.json")); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			wantErr: "File config.json exists. Remove it first", is: ErrSpecExists},
		{name: "missing bundle dir", spec: DefaultSpec(),
			setup:   func(t *testing.T, dir string) string { return filepath.Join(dir, "nope") },
			wantErr: "nope/config.json", is: fs.ErrNotExist},
		{name: "nil spec", setup: func(t *testing.T, dir string) string { return dir },
			wantErr: "no spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bundle := tc.setup(t, dir)
			before, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
			err := WriteSpec(bundle, tc.spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				var got specs.Spec
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatalf("written spec does not decode: %v", err)
				}
				if !reflect.DeepEqual(&got, tc.spec) {
					t.Errorf("read back %+v, want %+v", got, tc.spec)
				}
				if !strings.HasPrefix(string(b), "{\n\t\"ociVersion\"") {
					t.Errorf("not tab-indented like runc: %.30q", b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			after, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
			if string(after) != string(before) {
				t.Errorf("config.json changed from %q to %q", before, after)
			}
		})
	}
}

// TestWriteSpecInWorkingDir: an empty bundle dir is the working directory,
// as runc spec without --bundle.
func TestWriteSpecInWorkingDir(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := WriteSpec("", DefaultSpec()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("config.json"); err != nil {
		t.Fatal(err)
	}
	if err := WriteSpec("", DefaultSpec()); !errors.Is(err, ErrSpecExists) {
		t.Fatalf("second write: %v, want ErrSpecExists", err)
	}
}

// TestDefaultSpecLoads: what `spec` writes is a bundle this runtime accepts.
func TestDefaultSpecLoads(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteSpec(dir, DefaultSpec()); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatalf("bundle.Load of the default spec: %v", err)
	}
	if b.Rootfs != filepath.Join(dir, "rootfs") {
		t.Errorf("rootfs %q", b.Rootfs)
	}
}
