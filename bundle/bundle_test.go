package bundle

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runcSpec is what `runc spec` (runc 1.1.5) writes, trimmed of the linux
// masked/readonly paths.
const runcSpec = `{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": true,
		"user": {"uid": 0, "gid": 0},
		"args": ["sh"],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
		},
		"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
		"noNewPrivileges": true
	},
	"root": {"path": "rootfs", "readonly": true},
	"hostname": "runc",
	"mounts": [
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
		 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
		{"destination": "/dev/pts", "type": "devpts", "source": "devpts",
		 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
		{"destination": "/sys", "type": "sysfs", "source": "sysfs",
		 "options": ["nosuid", "noexec", "nodev", "ro"]}
	],
	"linux": {
		"resources": {"devices": [{"allow": false, "access": "rwm"}]},
		"namespaces": [
			{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
			{"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
		]
	}
}`

// specMap returns runcSpec as a generic map, changed by edit.
func specMap(t *testing.T, edit func(m map[string]any)) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(runcSpec), &m); err != nil {
		t.Fatalf("runcSpec: %v", err)
	}
	if edit != nil {
		edit(m)
	}
	return m
}

func proc(m map[string]any) map[string]any { return m["process"].(map[string]any) }

// writeBundle writes config (a string, or anything else as JSON) and an
// empty rootfs directory into a new bundle directory.
func writeBundle(t *testing.T, config any) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	var data []byte
	switch c := config.(type) {
	case string:
		data = []byte(c)
	default:
		var err error
		if data, err = json.MarshalIndent(c, "", "\t"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the bundle directory to load.
		setup func(t *testing.T) string
		want  []string // substrings of the error message
		is    error    // besides ErrInvalidBundle
	}{
		{
			name:  "bundle dir missing",
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") },
			want:  []string{"bundle directory does not exist", "nope"},
			is:    fs.ErrNotExist,
		},
		{
			name: "bundle path is a file",
			setup: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "file")
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			},
			want: []string{"bundle path is not a directory", "a regular file"},
		},
		{
			name: "no config.json",
			setup: func(t *testing.T) string {
				dir := writeBundle(t, runcSpec)
				os.Remove(filepath.Join(dir, ConfigName))
				return dir
			},
			want: []string{"no config.json in the bundle directory", "MUST reside in the root of the bundle directory"},
		},
		{
			name: "config.json is a directory",
			setup: func(t *testing.T) string {
				dir := writeBundle(t, runcSpec)
				p := filepath.Join(dir, ConfigName)
				os.Remove(p)
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: []string{"config.json is not a regular file", "a directory"},
		},
		{
			name:  "empty config.json",
			setup: func(t *testing.T) string { return writeBundle(t, " \n") },
			want:  []string{"config.json: file is empty"},
		},
		{
			name: "invalid JSON",
			setup: func(t *testing.T) string {
				return writeBundle(t, "{\n\t\"ociVersion\": \"1.0.0\",\n\t\"process\": {,\n}")
			},
			want: []string{"config.json: invalid JSON at line 3, column 14", "invalid character ','"},
		},
		{
			name:  "trailing garbage",
			setup: func(t *testing.T) string { return writeBundle(t, "{\"ociVersion\": \"1.0.0\"}\nx") },
			want:  []string{"invalid JSON at line 2, column 1", "after top-level value"},
		},
		{
			name: "wrong JSON type",
			setup: func(t *testing.T) string {
				return writeBundle(t, "{\n  \"ociVersion\": \"1.0.0\",\n  \"process\": {\"args\": \"sh\"}\n}")
			},
			// The value "sh" spans columns 23 to 26 of line 3.
			want: []string{"invalid JSON value ending at line 3, column 26", "process.args", "[]string"},
		},
		{
			name: "missing ociVersion",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { delete(m, "ociVersion") }))
			},
			want: []string{"ociVersion is missing"},
		},
		{
			name: "ociVersion not semver",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { m["ociVersion"] = "1.0" }))
			},
			want: []string{`ociVersion "1.0" is not a SemVer 2.0.0 version`, "MUST be in SemVer v2.0.0 format"},
		},
		{
			name: "unsupported major",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { m["ociVersion"] = "2.0.0" }))
			},
			want: []string{`unsupported ociVersion "2.0.0": major version 2 is not supported`},
			is:   ErrUnsupportedVersion,
		},
		{
			name: "missing root",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { delete(m, "root") }))
			},
			want: []string{"root is missing"},
		},
		{
			name: "missing root.path",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { m["root"] = map[string]any{"readonly": true} }))
			},
			want: []string{"root.path is missing"},
		},
		{
			name: "rootfs missing",
			setup: func(t *testing.T) string {
				dir := writeBundle(t, runcSpec)
				os.Remove(filepath.Join(dir, "rootfs"))
				return dir
			},
			want: []string{`root.path "rootfs"`, "does not exist", "a directory MUST exist at the path declared by the field"},
		},
		{
			name: "rootfs is a file",
			setup: func(t *testing.T) string {
				dir := writeBundle(t, specMap(t, func(m map[string]any) { m["root"] = map[string]any{"path": "img"} }))
				if err := os.WriteFile(filepath.Join(dir, "img"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: []string{`root.path "img"`, "is not a directory", "a regular file"},
		},
		{
			name: "missing process",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { delete(m, "process") }))
			},
			want: []string{"process is missing"},
		},
		{
			name: "empty process.args",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { proc(m)["args"] = []string{} }))
			},
			want: []string{"process.args is empty", "at least one entry is REQUIRED"},
		},
		{
			name: "empty program name",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { proc(m)["args"] = []string{"", "x"} }))
			},
			want: []string{"process.args[0] is empty"},
		},
		{
			name: "missing process.cwd",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { delete(proc(m), "cwd") }))
			},
			want: []string{"process.cwd is missing", "cwd MUST be an absolute path"},
		},
		{
			name: "relative process.cwd",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { proc(m)["cwd"] = "srv/app" }))
			},
			want: []string{`process.cwd "srv/app" is not absolute`, "cwd MUST be an absolute path"},
		},
		{
			name: "mount without destination",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					m["mounts"] = append(m["mounts"].([]any), map[string]any{"type": "tmpfs", "source": "tmpfs"})
				}))
			},
			want: []string{"mounts[4]: destination is missing"},
		},
		{
			name: "unknown rlimit",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					proc(m)["rlimits"] = []any{map[string]any{"type": "NOFILE", "soft": 1, "hard": 1}}
				}))
			},
			want: []string{`process.rlimits[0]: unknown type "NOFILE"`, "RLIMIT_*"},
		},
		{
			name: "oomScoreAdj above the kernel's range",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { proc(m)["oomScoreAdj"] = 1001 }))
			},
			want: []string{"process.oomScoreAdj 1001 is out of range", "-1000 to 1000"},
		},
		{
			name: "oomScoreAdj below the kernel's range",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) { proc(m)["oomScoreAdj"] = -1001 }))
			},
			want: []string{"process.oomScoreAdj -1001 is out of range"},
		},
		{
			name: "duplicate rlimit",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					proc(m)["rlimits"] = []any{
						map[string]any{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
						map[string]any{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
						map[string]any{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 2},
					}
				}))
			},
			want: []string{"process.rlimits[2]: type RLIMIT_NOFILE duplicates process.rlimits[0]"},
		},
		{
			name: "user namespace",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					l := m["linux"].(map[string]any)
					l["namespaces"] = append(l["namespaces"].([]any), map[string]any{"type": "user"})
				}))
			},
			want: []string{"linux.namespaces[6]: user namespaces are not supported", "without --userns"},
		},
		{
			name: "uid mappings",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					m["linux"].(map[string]any)["uidMappings"] = []any{map[string]any{"containerID": 0, "hostID": 1000, "size": 1}}
				}))
			},
			want: []string{"linux.uidMappings/gidMappings", "without a user namespace"},
		},
		{
			name: "duplicate namespace",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					l := m["linux"].(map[string]any)
					l["namespaces"] = append(l["namespaces"].([]any), map[string]any{"type": "pid", "path": "/proc/1/ns/pid"})
				}))
			},
			want: []string{`linux.namespaces[6]: type "pid" duplicates linux.namespaces[0]`},
		},
		{
			name: "device type",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					m["linux"].(map[string]any)["devices"] = []any{map[string]any{"path": "/dev/fuse", "type": "x", "major": 10, "minor": 229}}
				}))
			},
			want: []string{`linux.devices[0] (/dev/fuse): type "x"`},
		},
		{
			name: "device rule access",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					m["linux"].(map[string]any)["resources"] = map[string]any{"devices": []any{map[string]any{"allow": true, "access": "rwx"}}}
				}))
			},
			want: []string{`linux.resources.devices[0]: access "rwx"`},
		},
		{
			name: "unknown namespace",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					m["linux"].(map[string]any)["namespaces"] = []any{map[string]any{"type": "pids"}}
				}))
			},
			want: []string{`linux.namespaces[0]: unknown type "pids"`},
		},
		{
			name: "rlimit soft above hard",
			setup: func(t *testing.T) string {
				return writeBundle(t, specMap(t, func(m map[string]any) {
					proc(m)["rlimits"] = []any{map[string]any{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 1024}}
				}))
			},
			want: []string{"process.rlimits[0]: RLIMIT_NOFILE soft limit 4096 exceeds hard limit 1024"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			b, err := Load(dir)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, want an error", dir, b)
			}
			if !errors.Is(err, ErrInvalidBundle) {
				t.Errorf("error %q does not wrap ErrInvalidBundle", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			abs, _ := filepath.Abs(dir)
			if !strings.Contains(err.Error(), abs) {
				t.Errorf("error %q does not name the bundle %q", err, abs)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	t.Run("runc spec", func(t *testing.T) {
		dir := writeBundle(t, runcSpec)
		b, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if b.Dir != dir || b.Rootfs != filepath.Join(dir, "rootfs") {
			t.Errorf("Dir, Rootfs = %q, %q; want %q, %q", b.Dir, b.Rootfs, dir, filepath.Join(dir, "rootfs"))
		}
		if got := b.Spec.Process.Args; len(got) != 1 || got[0] != "sh" {
			t.Errorf("process.args = %q", got)
		}
		if got := len(b.Spec.Mounts); got != 4 {
			t.Errorf("%d mounts, want 4", got)
		}
		if !b.Spec.Root.Readonly || b.Spec.Hostname != "runc" {
			t.Errorf("root.readonly, hostname = %v, %q", b.Spec.Root.Readonly, b.Spec.Hostname)
		}
	})

	t.Run("relative bundle path", func(t *testing.T) {
		dir := writeBundle(t, runcSpec)
		t.Chdir(filepath.Dir(dir))
		b, err := Load(filepath.Base(dir))
		if err != nil {
			t.Fatal(err)
		}
		if b.Dir != dir {
			t.Errorf("Dir = %q, want %q", b.Dir, dir)
		}
	})

	t.Run("absolute root.path", func(t *testing.T) {
		other := t.TempDir()
		dir := writeBundle(t, specMap(t, func(m map[string]any) { m["root"] = map[string]any{"path": other + "/"} }))
		b, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if b.Rootfs != other {
			t.Errorf("Rootfs = %q, want %q", b.Rootfs, other)
		}
	})

	t.Run("hostname without uts namespace", func(t *testing.T) {
		dir := writeBundle(t, specMap(t, func(m map[string]any) {
			m["hostname"] = "vm1"
			m["linux"].(map[string]any)["namespaces"] = []any{map[string]any{"type": "pid"}}
		}))
		b, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if b.Spec.Hostname != "vm1" {
			t.Errorf("hostname = %q", b.Spec.Hostname)
		}
	})

	t.Run("relative mount destination is made absolute", func(t *testing.T) {
		dir := writeBundle(t, specMap(t, func(m map[string]any) {
			m["mounts"] = append(m["mounts"].([]any), map[string]any{"destination": "data/../srv", "type": "tmpfs", "source": "tmpfs"})
		}))
		b, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Spec.Mounts[4].Destination; got != "/srv" {
			t.Errorf("destination = %q, want /srv", got)
		}
		if got := b.Spec.Mounts[0].Destination; got != "/proc" {
			t.Errorf("destination = %q, want /proc", got)
		}
	})

	t.Run("unknown properties and newer 1.x versions", func(t *testing.T) {
		for _, v := range []string{"1.0.0", "1.3.0", "1.9.0-rc.1+build.5"} {
			dir := writeBundle(t, specMap(t, func(m map[string]any) {
				m["ociVersion"] = v
				m["org.example.future"] = map[string]any{"x": 1}
				proc(m)["someNewField"] = true
			}))
			if _, err := Load(dir); err != nil {
				t.Errorf("ociVersion %s: %v", v, err)
			}
		}
	})

	t.Run("config written by runc spec", func(t *testing.T) {
		runc, err := exec.LookPath("runc")
		if err != nil {
			t.Skip("runc not installed")
		}
		dir := t.TempDir()
		if out, err := exec.Command(runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
			t.Fatalf("runc spec: %v: %s", err, out)
		}
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLineCol(t *testing.T) {
	data := []byte("ab\ncd\n\nef")
	tests := []struct {
		off       int64
		line, col int
	}{
		{0, 1, 1}, {1, 1, 2}, {2, 1, 3}, {3, 2, 1}, {5, 2, 3}, {6, 3, 1}, {7, 4, 1}, {9, 4, 3}, {100, 4, 3},
	}
	for _, tt := range tests {
		if l, c := lineCol(data, tt.off); l != tt.line || c != tt.col {
			t.Errorf("lineCol(%d) = %d:%d, want %d:%d", tt.off, l, c, tt.line, tt.col)
		}
	}
}
