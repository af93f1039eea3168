package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// checkValidBundle checks what Load promises of a bundle it returns.
func checkValidBundle(t *testing.T, config []byte, b *Bundle, dir string) {
	t.Helper()
	if b.Dir != dir {
		t.Fatalf("Load of %q: Dir %q, want %q", config, b.Dir, dir)
	}
	if !filepath.IsAbs(b.Rootfs) {
		t.Fatalf("Load of %q: rootfs %q is not absolute", config, b.Rootfs)
	}
	if fi, err := os.Stat(b.Rootfs); err != nil || !fi.IsDir() {
		t.Fatalf("Load of %q: rootfs %q is not a directory: %v", config, b.Rootfs, err)
	}
	checkValidSpec(t, string(config), b.Spec)
}

// checkValidSpec checks a spec that validateSpec passed (what names it in
// messages): the invariants validateSpec stands for, read off the result.
func checkValidSpec(t *testing.T, what string, s *specs.Spec) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%q passed: "+format, append([]any{what}, args...)...)
	}
	m := semver.FindStringSubmatch(s.Version)
	if m == nil || m[1] != "1" {
		fail("ociVersion %q", s.Version)
	}
	if s.Root == nil || s.Root.Path == "" {
		fail("root %+v", s.Root)
	}
	p := s.Process
	if p == nil || len(p.Args) == 0 || p.Args[0] == "" {
		fail("process %+v: no program", p)
	}
	if !path.IsAbs(p.Cwd) {
		fail("cwd %q", p.Cwd)
	}
	seen := map[string]bool{}
	for _, r := range p.Rlimits {
		if _, ok := procinit.RlimitResources[r.Type]; !ok || seen[r.Type] || r.Soft > r.Hard {
			fail("rlimits %+v", p.Rlimits)
		}
		seen[r.Type] = true
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Destination) {
			fail("mount destination %q", m.Destination)
		}
	}
	l := s.Linux
	if l == nil {
		return
	}
	if len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0 {
		fail("id mappings")
	}
	ns := map[specs.LinuxNamespaceType]bool{}
	for _, n := range l.Namespaces {
		if !namespaceTypes[n.Type] || ns[n.Type] || n.Type == specs.UserNamespace {
			fail("namespaces %+v", l.Namespaces)
		}
		ns[n.Type] = true
	}
	for name := range l.Sysctl {
		// It becomes /proc/sys/<name with / for .>: one path below it.
		p := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
		if name == "" || strings.ContainsAny(name, "/\x00") || path.Clean(p) != p || !strings.HasPrefix(p, "/proc/sys/") {
			fail("sysctl %q", name)
		}
		// runc's rule: only a sysctl of a namespace of the container's own.
		ipc := ipcSysctls[name] || strings.HasPrefix(name, "fs.mqueue.")
		if !(ipc && ns[specs.IPCNamespace] || strings.HasPrefix(name, "net.") && ns[specs.NetworkNamespace] ||
			name == "kernel.domainname" && ns[specs.UTSNamespace]) {
			fail("sysctl %q with namespaces %v", name, l.Namespaces)
		}
	}
	for _, d := range l.Devices {
		if !path.IsAbs(d.Path) || path.Clean(d.Path) == "/" || !strings.Contains("cbup", d.Type) || len(d.Type) != 1 {
			fail("device %+v", d)
		}
		if d.Type != "p" && (d.Major < 0 || d.Minor < 0 || d.Major > 0xfff || d.Minor > 0xfffff) {
			fail("device %+v", d)
		}
	}
	if l.Resources != nil {
		for _, r := range l.Resources.Devices {
			if len(r.Type) > 1 || !strings.Contains("abc", r.Type) || strings.Trim(r.Access, "rwm") != "" {
				fail("device rule %+v", r)
			}
		}
	}
}

// fuzzSeedSpec is a small valid config.json.
const fuzzSeedSpec = `{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1024}]},` +
	`"root":{"path":"rootfs"},"mounts":[{"destination":"proc","type":"proc"}],` +
	`"linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"}],"sysctl":{"net.ipv4.ip_forward":"1","kernel.shmmax":"1"},` +
	`"devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}],"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","access":"rw"}]}}}`

func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		fuzzSeedSpec,
		`{"ociVersion":"1.0.0","process":{"args":["/bin/true"],"cwd":"/tmp"},"root":{"path":"rootfs","readonly":true}}`,
		`{"ociVersion":"1.0.2-dev+x.1","process":{"args":["a"],"cwd":"/"},"root":{"path":"/"}}`,
		`{"ociVersion":"2.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0.0","process":{"args":[""],"cwd":"/"},"root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"tmp"},"root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_CPU","soft":2,"hard":1}]},"root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_CPU"},{"type":"RLIMIT_CPU"}]},"root":{"path":"rootfs"}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"user"}]}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"sysctl":{"kernel..x":"1"}}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"missing"}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"config.json"}}`,
		`{"ociVersion":"1.0.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"mounts":[{"destination":""}]}`,
		`{"ociVersion":1}`,
		"{\n\"ociVersion\": \"1.0.0\",\n\"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"},,\n}",
		"",
		"null",
		"[]",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		f.Fatal(err)
	}
	cfg := filepath.Join(dir, ConfigName)
	load := func(t *testing.T, config []byte) (*Bundle, error) {
		t.Helper()
		if err := os.WriteFile(cfg, config, 0o644); err != nil {
			t.Fatal(err)
		}
		return Load(dir)
	}
	f.Fuzz(func(t *testing.T, config []byte) {
		b, err := load(t, config)
		if err != nil {
			if b != nil {
				t.Fatalf("Load of %q returned a bundle and %v", config, err)
			}
			if !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("Load of %q: %v does not wrap ErrInvalidBundle", config, err)
			}
			return
		}
		checkValidBundle(t, config, b, dir)

		// Load normalizes: the spec it returns loads again, unchanged.
		norm, err := json.Marshal(b.Spec)
		if err != nil {
			t.Fatalf("Load of %q: the spec does not marshal: %v", config, err)
		}
		b2, err := load(t, norm)
		if err != nil {
			t.Fatalf("Load of %q passes, of its result %s fails: %v", config, norm, err)
		}
		again, err := json.Marshal(b2.Spec)
		if err != nil || !bytes.Equal(norm, again) || b2.Rootfs != b.Rootfs {
			t.Fatalf("Load of %q is not idempotent:\n%s (%s)\n%s (%s)", config, norm, b.Rootfs, again, b2.Rootfs)
		}
	})
}

// FuzzValidateSpec drives validateSpec with the fields it checks, which
// FuzzLoad's JSON mutations reach only slowly. Lists are lines (or
// comma-separated): rlimits "TYPE SOFT HARD", devices "PATH TYPE MAJOR
// MINOR", device rules "TYPE ACCESS".
func FuzzValidateSpec(f *testing.F) {
	f.Add("1.0.0", "sh", "/", "RLIMIT_NOFILE 1024 1024\nRLIMIT_CORE 0 0", "pid,network,ipc,uts", "net.ipv4.ip_forward,kernel.shmmax,kernel.domainname",
		"/dev/fuse c 10 229\n/dev/p p -1 -1", "a rwm\nc rw", "proc\n/dev/../dev/pts")
	f.Add("1.0.0-rc.1+build.5", "", "/", "", "", "", "", "", "")
	f.Add("01.0.0", "sh", "rel", "RLIMIT_CPU 2 1", "user", "kernel.hostname", "/ c 0 0", "d r", "")
	f.Add("2.0.0", "sh", "/", "RLIMIT_X 0 0\nRLIMIT_X 0 0", "pid,pid", "a..b,/x,fs.mqueue.x", "/dev/x c 4096 0\n/dev/y q 0 0", "a x", "")
	f.Fuzz(func(t *testing.T, version, args, cwd, rlimits, namespaces, sysctls, devices, rules, mounts string) {
		spec := &specs.Spec{Version: version, Root: &specs.Root{Path: "rootfs"},
			Process: &specs.Process{Cwd: cwd}, Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
		if args != "" {
			spec.Process.Args = strings.Split(args, "\n")
		}
		for _, l := range fuzzLines(rlimits) {
			var r specs.POSIXRlimit
			if _, err := fmt.Sscan(l, &r.Type, &r.Soft, &r.Hard); err == nil {
				spec.Process.Rlimits = append(spec.Process.Rlimits, r)
			}
		}
		for _, n := range strings.Split(namespaces, ",") {
			if n != "" {
				spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.LinuxNamespaceType(n)})
			}
		}
		if sysctls != "" {
			spec.Linux.Sysctl = map[string]string{}
			for _, n := range strings.Split(sysctls, ",") {
				spec.Linux.Sysctl[n] = "1"
			}
		}
		for _, l := range fuzzLines(devices) {
			var d specs.LinuxDevice
			if _, err := fmt.Sscan(l, &d.Path, &d.Type, &d.Major, &d.Minor); err == nil {
				spec.Linux.Devices = append(spec.Linux.Devices, d)
			}
		}
		for _, l := range fuzzLines(rules) {
			var r specs.LinuxDeviceCgroup
			if _, err := fmt.Sscan(l, &r.Type, &r.Access); err == nil {
				spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, r)
			}
		}
		for _, d := range fuzzLines(mounts) {
			spec.Mounts = append(spec.Mounts, specs.Mount{Destination: d})
		}
		what := fmt.Sprintf("%+v", spec)
		if err := validateSpec(spec); err != nil {
			return
		}
		checkValidSpec(t, what, spec)
		// What it normalized passes again, unchanged.
		before, _ := json.Marshal(spec)
		if err := validateSpec(spec); err != nil {
			t.Fatalf("%s passed, then failed: %v", before, err)
		}
		if after, _ := json.Marshal(spec); !bytes.Equal(before, after) {
			t.Fatalf("validateSpec changed %s to %s", before, after)
		}
	})
}

// fuzzLines splits s into its non-empty lines.
func fuzzLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
