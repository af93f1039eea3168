package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestCLIBadInput runs the CLI on broken bundles, specs and arguments: each
// must fail with an error that names the problem, on one line after
// "initos-runtime: ", and change nothing: no state dir, no disk image, no
// process. None of them may boot a VM.
func TestCLIBadInput(t *testing.T) {
	needVMs(t)
	t.Parallel()
	root := t.TempDir() // a state root of its own: nothing may appear in it
	base := busyboxSpec(t, "true")
	// bundle writes a bundle of base changed by edit.
	bundle := func(edit func(s *specs.Spec)) string {
		b := *base
		p := *base.Process
		b.Process = &p
		l := *base.Linux
		b.Linux = &l
		r := *base.Root
		b.Root = &r
		edit(&b)
		return writeBundle(t, &b)
	}
	missingRootfs := bundle(func(s *specs.Spec) { s.Root.Path = filepath.Join(t.TempDir(), "missing") })
	badJSON := t.TempDir()
	if err := os.WriteFile(filepath.Join(badJSON, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": `), 0o644); err != nil {
		t.Fatal(err)
	}
	u := func(v uint) *uint { return &v }
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"missing bundle", []string{"create", "--bundle", filepath.Join(t.TempDir(), "nope"), "bad-1"}, "does not exist"},
		{"broken config.json", []string{"create", "--bundle", badJSON, "bad-2"}, "config.json"},
		{"major version 2", []string{"create", "--bundle", bundle(func(s *specs.Spec) { s.Version = "2.0.0" }), "bad-3"}, "version"},
		{"missing rootfs", []string{"create", "--bundle", missingRootfs, "bad-4"}, "missing"},
		{"no args", []string{"create", "--bundle", bundle(func(s *specs.Spec) { s.Process.Args = nil }), "bad-5"}, "args"},
		{"relative cwd", []string{"create", "--bundle", bundle(func(s *specs.Spec) { s.Process.Cwd = "tmp" }), "bad-6"}, "cwd"},
		{"unknown rlimit", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_FOO", Soft: 1, Hard: 1}}
		}), "bad-7"}, "RLIMIT_FOO"},
		{"rlimit soft above hard", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2048, Hard: 1024}}
		}), "bad-8"}, "RLIMIT_NOFILE"},
		{"user namespace", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Linux.Namespaces = append(slices.Clone(s.Linux.Namespaces), specs.LinuxNamespace{Type: specs.UserNamespace})
		}), "bad-9"}, "user namespace"},
		{"sysctl not namespaced", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Linux.Sysctl = map[string]string{"vm.swappiness": "10"}
		}), "bad-10"}, "vm.swappiness"},
		{"seccomp unknown action", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}
		}), "bad-11"}, "SCMP_ACT_BOGUS"},
		{"seccomp errno too big", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: u(1 << 20)}
		}), "bad-12"}, "errnoRet"},
		{"seccomp listener", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/listener.sock"}
		}), "bad-13"}, "listenerPath"},
		{"device bad type", []string{"create", "--bundle", bundle(func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "q", Major: 1, Minor: 3}}
		}), "bad-14"}, "/dev/x"},
		{"id with a slash", []string{"create", "--bundle", bundle(func(*specs.Spec) {}), "../escape"}, "../escape"},
		{"empty id", []string{"create", "--bundle", bundle(func(*specs.Spec) {}), ""}, "id"},
		{"unknown flag", []string{"create", "--bundel", "x", "bad-15"}, "bundel"},
		{"start of none", []string{"start", "bad-16"}, "does not exist"},
		{"kill of none", []string{"kill", "bad-17", "KILL"}, "does not exist"},
		{"delete of none", []string{"delete", "bad-18"}, "does not exist"},
		{"state of none", []string{"state", "bad-19"}, "does not exist"},
		{"exec in none", []string{"exec", "bad-20", "true"}, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runtimeCmd(t, nil, append([]string{"--root", root}, tc.args...)...)
			msg := strings.TrimSpace(string(r.stderr))
			if r.code == 0 {
				t.Fatalf("exit 0 (stdout %q, stderr %q), want an error naming %q", r.stdout, msg, tc.want)
			}
			if !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") > 0 {
				t.Errorf("stderr %q: want one line naming %q", msg, tc.want)
			}
			t.Logf("%s", msg)
			if ents, err := os.ReadDir(root); err != nil && !os.IsNotExist(err) || len(ents) > 0 {
				t.Errorf("the state root holds %v (%v) after a failed %s", ents, err, tc.args[0])
			}
			// The id (the last word) names nothing left, when it can name
			// a state dir at all.
			if id := tc.args[len(tc.args)-1]; id != "" && !strings.Contains(id, "/") {
				assertNothingLeft(t, id)
			}
		})
	}
}
