package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Issue 6: host bind mounts, named volumes, tmpfs and /dev/shm through
// podman, on each share filesystem. Every check runs from both sides: what
// the guest sees of the host's files and what the host sees of the
// guest's writes.

// shareFSes are the share filesystems the volume tests run on: virtiofs,
// the default (the run's config, "auto"), and 9p (a config saying so).
var shareFSes = []string{vmm.ShareVirtiofs, vmm.Share9p}

// needShareFS skips (or, with INITOS_INTEGRATION=1, fails) a test of
// virtiofs shares on a host without virtiofsd.
func needShareFS(t testing.TB, fs string) {
	t.Helper()
	if fs != vmm.ShareVirtiofs {
		return
	}
	if _, err := vmm.FindVirtiofsd(env.cfg.VirtiofsdBinary); err != nil {
		if os.Getenv("INITOS_INTEGRATION") == "1" {
			t.Fatalf("virtiofs shares: %v; INITOS_INTEGRATION=1 makes that a failure", err)
		}
		t.Skipf("virtiofs shares: %v", err)
	}
}

// shareFSConfig returns the config file that makes initos-runtime share
// host directories over fs: the run's own for virtiofs (the default where
// virtiofsd is installed), a derived one for 9p.
func shareFSConfig(t testing.TB, fs string) string {
	t.Helper()
	needShareFS(t, fs)
	if fs == vmm.Share9p {
		return writeConfig(t, func(c *runtime.Config) { c.ShareFS = vmm.Share9p })
	}
	return env.config
}

// Owner and mode of the fixture's owned file, and the user the guest
// writes as.
const (
	ownedUID, ownedGID = 1234, 2345
	ownedMode          = 0o640
	guestUser          = "1000:1000"
)

// volumeFixture is the host side of a volume test: directories and files
// with known owners, modes and contents, every name and content unique to
// the fixture (tok).
type volumeFixture struct {
	tok string
	// data (-v data:/data) holds owned (ownedUID:ownedGID, ownedMode),
	// plain, rw (0777, for the guest's writes) and links: symlinks to
	// secret (absolute, relative, ../../.. deep) and to plain.
	data, owned, plain, rw string
	links                  []volumeLink
	// ro (-v ro:/ro:ro) holds roFile.
	ro, roFile string
	// file (-v file:/etc/x) has a sibling in its directory.
	file, sibling string
	// secret is a host-only file, outside every mounted source.
	secret string
}

// volumeLink is a symlink in the fixture's data directory.
type volumeLink struct {
	name, target string
	// guestPath is where the target resolves in the container: inside the
	// container's own filesystem, never on the host.
	guestPath string
}

// Contents of the fixture's files.
func (fx *volumeFixture) ownedContent() string   { return "owned-" + fx.tok + "\n" }
func (fx *volumeFixture) plainContent() string   { return "plain-" + fx.tok + "\n" }
func (fx *volumeFixture) roContent() string      { return "ro-" + fx.tok + "\n" }
func (fx *volumeFixture) fileContent() string    { return "bound-content-" + fx.tok + "\n" }
func (fx *volumeFixture) siblingContent() string { return "sibling-content-" + fx.tok + "\n" }
func (fx *volumeFixture) secretContent() string  { return "host-secret-" + fx.tok + "\n" }

func newVolumeFixture(t testing.TB) *volumeFixture {
	t.Helper()
	base, secretDir := t.TempDir(), t.TempDir()
	fx := &volumeFixture{
		tok:    uniqueToken(t),
		data:   filepath.Join(base, "data"),
		ro:     filepath.Join(base, "ro"),
		secret: filepath.Join(secretDir, "secret"),
	}
	files := filepath.Join(base, "files")
	fx.owned = filepath.Join(fx.data, "owned")
	fx.plain = filepath.Join(fx.data, "plain-"+fx.tok)
	fx.rw = filepath.Join(fx.data, "rw")
	fx.roFile = filepath.Join(fx.ro, "file")
	fx.file = filepath.Join(files, "bound-"+fx.tok)
	fx.sibling = filepath.Join(files, "sibling-"+fx.tok)

	for dir, mode := range map[string]os.FileMode{fx.data: 0o755, fx.rw: 0o777, fx.ro: 0o755, files: 0o755} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil { // not the umask's
			t.Fatal(err)
		}
	}
	for path, content := range map[string]string{fx.owned: fx.ownedContent(), fx.plain: fx.plainContent(), fx.roFile: fx.roContent(),
		fx.file: fx.fileContent(), fx.sibling: fx.siblingContent(), fx.secret: fx.secretContent()} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(fx.owned, ownedUID, ownedGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fx.owned, ownedMode); err != nil {
		t.Fatal(err)
	}

	rel, err := filepath.Rel(fx.data, fx.secret)
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("../", 16) + strings.TrimPrefix(fx.secret, "/")
	fx.links = []volumeLink{
		{name: "abs", target: fx.secret, guestPath: fx.secret},
		{name: "rel", target: rel, guestPath: filepath.Join("/data", rel)},
		{name: "deep", target: deep, guestPath: filepath.Join("/data", deep)},
		// Within the mount: the link resolves to the mounted file.
		{name: "inside", target: filepath.Base(fx.plain), guestPath: "/data/" + filepath.Base(fx.plain)},
	}
	for _, l := range fx.links {
		if err := os.Symlink(l.target, filepath.Join(fx.data, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

// guestShell runs script with sh -c in a running container (exec), with
// the engine's exec flags (e.g. -u UID:GID) before the container's name.
type guestShell func(t *testing.T, script string, flags ...string) result

// must runs script and fails the test unless it exits 0; it returns
// stdout.
func (sh guestShell) must(t *testing.T, script string, flags ...string) string {
	t.Helper()
	r := sh(t, script, flags...)
	if r.code != 0 {
		t.Fatalf("in the container: sh -c %q: exit %d; stdout %q, stderr %q", script, r.code, r.stdout, r.stderr)
	}
	return string(r.stdout)
}

// statScript prints owner, mode and type of each path, then the size of
// the tmpfs mounts among fsPaths: what runc and initos must show alike.
func statScript(paths, fsPaths []string) string {
	s := "stat -c '%n %u:%g %a %F' " + strings.Join(paths, " ")
	if len(fsPaths) > 0 {
		s += "; stat -f -c '%n %b*%S' " + strings.Join(fsPaths, " ")
	}
	return s
}

// checkShareFS checks that the guest mounted each destination from the
// share filesystem fs.
func checkShareFS(t *testing.T, sh guestShell, fs string, dests ...string) {
	var want []string
	for _, d := range dests {
		want = append(want, d+" "+fs)
	}
	sort.Strings(want)
	cond := make([]string, len(dests))
	for i, d := range dests {
		cond[i] = fmt.Sprintf("$2==%q", d)
	}
	out := sh.must(t, "awk '"+strings.Join(cond, "||")+"{print $2, $3}' /proc/mounts")
	got := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mounts in the container (destination, type): %q, want %q", got, want)
	}
}

// checkOwnership checks the owned file's owner and mode in the guest, and,
// with ref (the same mounts under runc), that the guest shows what runc
// shows for every path of the mounts.
func checkOwnership(t *testing.T, sh guestShell, ref func(t *testing.T, script string) string, paths, fsPaths []string) {
	want := fmt.Sprintf("%d:%d %o", ownedUID, ownedGID, ownedMode)
	if got := strings.TrimSpace(sh.must(t, "stat -c '%u:%g %a' /data/owned")); got != want {
		t.Errorf("stat -c '%%u:%%g %%a' /data/owned in the container: %q, want %q (the host file's)", got, want)
	}
	if ref == nil {
		t.Log("runc not installed: no comparison of the mounts' attributes with runc's")
		return
	}
	script := statScript(paths, fsPaths)
	got, runc := sh.must(t, script), ref(t, script)
	if got != runc {
		t.Errorf("attributes of the mounts (%s):\ninitos:\n%s\nrunc:\n%s", script, got, runc)
	} else {
		t.Logf("attributes of the mounts, as under runc:\n%s", got)
	}
}

// checkGuestWrites has the guest create files in /data/rw as root and as
// guestUser: the host sees each with its writer's owner and content as
// soon as the exec returned.
func checkGuestWrites(t *testing.T, sh guestShell, fx *volumeFixture) {
	for _, c := range []struct {
		name, user string
		uid, gid   uint32
	}{{"root", "", 0, 0}, {"user-1000", guestUser, 1000, 1000}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			name := "by-guest-" + c.name
			content := fmt.Sprintf("written by %s in the guest, %s\n", c.name, fx.tok)
			var flags []string
			if c.user != "" {
				flags = []string{"-u", c.user}
			}
			sh.must(t, fmt.Sprintf("printf %%s %s > /data/rw/%s", shellQuote(content), name), flags...)
			path := filepath.Join(fx.rw, name)
			b, err := os.ReadFile(path)
			if err != nil || string(b) != content {
				t.Fatalf("host reads %s right after the guest wrote it: %q (%v), want %q", path, b, err, content)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != c.uid || st.Gid != c.gid {
				t.Errorf("host: %s is owned by %d:%d, want %d:%d (the guest writer's)", path, st.Uid, st.Gid, c.uid, c.gid)
			}
		})
	}
}

// checkHostWrites has the host create, rewrite in place (the guest read the
// old content first) and remove a file in data: the guest sees each change
// at once.
func checkHostWrites(t *testing.T, sh guestShell, fx *volumeFixture) {
	path := filepath.Join(fx.data, "from-host")
	for i, content := range []string{"first " + fx.tok + "\n", "second, longer, " + fx.tok + "\n", "3rd\n"} {
		// os.WriteFile truncates: the same inode the guest read before.
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := sh.must(t, "cat /data/from-host"); got != content {
			t.Fatalf("write %d: the guest reads %q right after the host wrote %q", i+1, got, content)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := sh(t, "test -e /data/from-host"); r.code == 0 {
		t.Errorf("the guest still sees /data/from-host after the host removed it")
	}
}

// checkReadOnly checks that writes to the read-only mount fail with EROFS
// and change nothing on the host, while reads work.
func checkReadOnly(t *testing.T, sh guestShell, fx *volumeFixture) {
	if got := sh.must(t, "cat /ro/file"); got != fx.roContent() {
		t.Errorf("/ro/file in the guest: %q, want %q", got, fx.roContent())
	}
	for _, c := range []struct{ name, script, hostPath string }{
		{"create", "echo x > /ro/new", filepath.Join(fx.ro, "new")},
		{"append", "echo x >> /ro/file", ""},
		{"mkdir", "mkdir /ro/dir", filepath.Join(fx.ro, "dir")},
		{"remove", "rm /ro/file", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := sh(t, c.script)
			if r.code == 0 || !strings.Contains(string(r.stderr), "Read-only file system") {
				t.Errorf("%s on the read-only mount: exit %d, stderr %q; want a failure with \"Read-only file system\"", c.script, r.code, r.stderr)
			}
			if c.hostPath != "" {
				if _, err := os.Lstat(c.hostPath); err == nil {
					t.Errorf("%s on the read-only mount made %s on the host", c.script, c.hostPath)
				}
			}
		})
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(fx.roFile); err != nil || string(b) != fx.roContent() {
			t.Errorf("host: %s is %q (%v) after the guest's writes to the read-only mount, want %q", fx.roFile, b, err, fx.roContent())
		}
	})
}

// TestVolumes runs the volume checks through podman on each share
// filesystem, in parallel: one container holds every kind of mount
// (checked by execs, in parallel), two more share a named volume. Where
// runc is installed, the attributes of the mounts are compared with what
// podman's runc shows for the same mounts.
func TestVolumes(t *testing.T) {
	needVMs(t)
	var ref *podman
	if _, err := exec.LookPath("runc"); err == nil {
		ref = newPodmanFor(t, "runc")
	}
	for _, fs := range shareFSes {
		t.Run(fs, func(t *testing.T) {
			t.Parallel()
			p := newPodmanWithConfig(t, shareFSConfig(t, fs))
			t.Run("mounts", func(t *testing.T) { t.Parallel(); testPodmanMounts(t, p, ref, fs) })
			t.Run("named-volume", func(t *testing.T) { t.Parallel(); testPodmanNamedVolume(t, p, fs) })
		})
	}
}

// testPodmanMounts runs one container with -v dir:/data, -v dir:/ro:ro,
// -v file:/etc/x, --tmpfs /t:size=8m and --shm-size 64m and checks each
// mount from both sides.
func testPodmanMounts(t *testing.T, p, ref *podman, fs string) {
	fx := newVolumeFixture(t)
	// The spec's environment is in the container's OCI config.json, a
	// sibling of podman's file binds (hosts, hostname, resolv.conf).
	specTok := "spec-only-" + fx.tok
	mounts := []string{"-v", fx.data + ":/data", "-v", fx.ro + ":/ro:ro", "-v", fx.file + ":/etc/x",
		"--tmpfs", "/t:size=8m", "--shm-size", "64m", "-e", "VOLUME_TEST=" + specTok}
	name := "initos-vol-" + fs
	p.removeLater(t, name)
	id := p.ok(t, append(append([]string{"run", "-d", "--name", name, "--network", "none"}, mounts...), podmanImage, "sleep", "3600")...)
	sh := guestShell(func(t *testing.T, script string, flags ...string) result {
		t.Helper()
		return p.run(t, nil, append(append(append([]string{"exec"}, flags...), name), "sh", "-c", script)...)
	})
	var runc func(t *testing.T, script string) string
	if ref != nil {
		runc = func(t *testing.T, script string) string {
			t.Helper()
			return ref.ok(t, append(append([]string{"run", "--rm", "--network", "none"}, mounts...), podmanImage, "sh", "-c", script)...) + "\n"
		}
	}

	// The checks run in parallel, each with its own files; the container
	// goes once they all ended.
	t.Run("checks", func(t *testing.T) {
		t.Run("share-fs", func(t *testing.T) {
			t.Parallel()
			if !p.initos {
				t.Skip("the runtime under test is not initos-runtime: no share")
			}
			checkShareFS(t, sh, fs, "/data", "/ro", "/etc/x")
		})
		t.Run("ownership", func(t *testing.T) {
			t.Parallel()
			checkOwnership(t, sh, runc,
				[]string{"/data", "/data/owned", "/data/" + filepath.Base(fx.plain), "/data/rw", "/ro", "/ro/file", "/etc/x", "/t", "/dev/shm"},
				[]string{"/t", "/dev/shm"})
		})
		t.Run("guest-writes", func(t *testing.T) { t.Parallel(); checkGuestWrites(t, sh, fx) })
		t.Run("host-writes", func(t *testing.T) { t.Parallel(); checkHostWrites(t, sh, fx) })
		t.Run("read-only", func(t *testing.T) { t.Parallel(); checkReadOnly(t, sh, fx) })

		t.Run("file-bind", func(t *testing.T) {
			t.Parallel()
			if got := sh.must(t, "ls -ld /etc/x | cut -c1; cat /etc/x"); got != "-\n"+fx.fileContent() {
				t.Errorf("/etc/x in the guest: %q, want a regular file (-) holding %q", got, fx.fileContent())
			}
			// Nothing of the bound file's directory is visible anywhere: not the
			// sibling (by name or content), not the file's own name, not the
			// OCI config beside podman's file binds. The bound file's content,
			// found at /etc/x, shows the search works.
			prune := `/ \( -path /proc -o -path /sys \) -prune -o`
			script := fmt.Sprintf(`find %s \( -name %s -o -name %s -o -name %s \) -print; echo --; find %s -type f -exec grep -l -e %s -e %s -e %s {} +`,
				prune, filepath.Base(fx.sibling), filepath.Base(fx.file), filepath.Base(fx.plain),
				prune, strings.TrimSpace(fx.siblingContent()), strings.TrimSpace(fx.fileContent()), specTok)
			r := sh(t, script)
			want := "/data/" + filepath.Base(fx.plain) + "\n--\n/etc/x\n"
			if string(r.stdout) != want {
				t.Errorf("search of the container's files (%s): %q (stderr %q), want only %q: the sibling %s, the file's host name or the OCI config are visible",
					script, r.stdout, r.stderr, want, fx.sibling)
			}
			// An in-place rewrite on the host reaches the bound file at once.
			content := "rewritten " + fx.tok + "\n"
			if err := os.WriteFile(fx.file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := sh.must(t, "cat /etc/x"); got != content {
				t.Errorf("/etc/x right after the host rewrote it: %q, want %q", got, content)
			}
		})

		t.Run("symlinks", func(t *testing.T) {
			t.Parallel()
			// The guest makes each link's target in its own filesystem, then
			// reads and writes through the links: they resolve there, and the
			// host's secret is neither read nor changed.
			guestContent := "guest-side-" + fx.tok
			var script strings.Builder
			var want strings.Builder
			for _, l := range fx.links {
				if l.name != "inside" {
					fmt.Fprintf(&script, "mkdir -p %s && echo %s > %s; ", filepath.Dir(l.guestPath), guestContent, l.guestPath)
				}
			}
			for _, l := range fx.links {
				fmt.Fprintf(&script, `echo "%s $(readlink /data/%s) $(cat /data/%s 2>&1)"; `, l.name, l.name, l.name)
				content := guestContent
				if l.name == "inside" {
					content = strings.TrimSpace(fx.plainContent())
				}
				fmt.Fprintf(&want, "%s %s %s\n", l.name, l.target, content)
			}
			script.WriteString("echo overwritten > /data/abs; echo appended >> /data/deep")
			got := sh.must(t, script.String())
			if got != want.String() {
				t.Errorf("links in the guest (name, readlink, cat):\n%s\nwant:\n%s", got, want.String())
			}
			if strings.Contains(got, "host-secret") {
				t.Errorf("the guest read the host-only file %s through a symlink", fx.secret)
			}
			if b, err := os.ReadFile(fx.secret); err != nil || string(b) != fx.secretContent() {
				t.Errorf("host: %s is %q (%v) after the guest wrote through symlinks to it, want %q", fx.secret, b, err, fx.secretContent())
			}
			if entries, _ := os.ReadDir(filepath.Dir(fx.secret)); len(entries) != 1 {
				t.Errorf("host: the secret's directory holds %d entries, want only the secret", len(entries))
			}
		})

		t.Run("tmpfs-and-shm", func(t *testing.T) {
			t.Parallel()
			got := sh.must(t, `for d in /t /dev/shm; do echo "$d $(awk -v d=$d '$2==d{print $3}' /proc/mounts) $(stat -f -c '%b %S' $d)"; done; echo x > /t/f && echo x > /dev/shm/f && echo writable`)
			var sizes []string
			for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
				f := strings.Fields(l)
				if len(f) == 4 {
					blocks, _ := strconv.ParseInt(f[2], 10, 64)
					bsize, _ := strconv.ParseInt(f[3], 10, 64)
					sizes = append(sizes, fmt.Sprintf("%s %s %dMiB", f[0], f[1], blocks*bsize>>20))
				} else {
					sizes = append(sizes, l)
				}
			}
			if want := []string{"/t tmpfs 8MiB", "/dev/shm tmpfs 64MiB", "writable"}; strings.Join(sizes, "; ") != strings.Join(want, "; ") {
				t.Errorf("tmpfs mounts in the guest: %q (%q), want %q", sizes, got, want)
			}
		})

		t.Run("share-holds-only-sources", func(t *testing.T) {
			t.Parallel()
			if !p.initos {
				t.Skip("the runtime under test is not initos-runtime: no share")
			}
			// The share's binds live in the monitor's mount namespace,
			// which its threads but the main one see (that one has the
			// container's view): /proc/PID/task/TID/root.
			pid := p.inspect(t, name, "{{.State.Pid}}")
			checkShareEntries(t, p.inspect(t, name, "{{.OCIConfigPath}}"), filepath.Join(hostViewRoot(t, pid), p.stateDir(id), "share"))
		})
	})
	removeChecked(t, p, name, id)
}

// removeChecked removes running container name (ID id) with podman rm
// --force and checks that nothing of it is left: its processes, its
// monitor and VMM (and virtiofsd), state dir and disk image.
func removeChecked(t *testing.T, p *podman, name, id string) {
	t.Helper()
	var procs []proc
	for _, f := range []string{"{{.State.Pid}}", "{{.State.ConmonPid}}"} {
		pid, err := strconv.Atoi(p.inspect(t, name, f))
		if err != nil || pid <= 0 {
			t.Fatalf("podman inspect --format %s %s: %d (%v), want the running container's", f, name, pid, err)
		}
		procs = append(procs, procOf(t, pid))
	}
	p.ok(t, "rm", "--force", "--time", "0", name)
	p.assertRemoved(t, id, procs...)
}

// checkShareEntries checks a running container's share (shareDir, as its
// VMM sees it) on the host: one slot per host bind mount of its OCI
// config (but /dev/shm, a guest tmpfs), each holding one entry named as
// the mount's source and that is the source itself (same file), nothing
// else; the entry of a read-only mount is read-only on the host side too.
func checkShareEntries(t *testing.T, configPath, shareDir string) {
	b, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", configPath, err)
	}
	var binds []specs.Mount
	for _, m := range s.Mounts {
		if filepath.Clean(m.Destination) != "/dev/shm" && (m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")) {
			binds = append(binds, m)
		}
	}
	slots, err := os.ReadDir(shareDir)
	if err != nil {
		t.Fatalf("the share of the running container: %v", err)
	}
	var entries []string // <slot>/<name>
	for _, slot := range slots {
		inner, err := os.ReadDir(filepath.Join(shareDir, slot.Name()))
		if err != nil || len(inner) != 1 {
			t.Errorf("share slot %s: %d entries, %v; want one", slot.Name(), len(inner), err)
			continue
		}
		entries = append(entries, filepath.Join(slot.Name(), inner[0].Name()))
	}
	if len(entries) != len(binds) {
		t.Errorf("share %s holds %d entries (%s), want %d: one per bind mount %v", shareDir, len(entries), strings.Join(entries, " "), len(binds), binds)
	}
	readOnly := 0
	for _, e := range entries {
		path := filepath.Join(shareDir, e)
		efi, err := os.Stat(path)
		if err != nil {
			t.Errorf("share entry %s: %v", e, err)
			continue
		}
		i := slices.IndexFunc(binds, func(m specs.Mount) bool {
			sfi, err := os.Stat(m.Source)
			return err == nil && os.SameFile(efi, sfi)
		})
		if i < 0 {
			t.Errorf("share entry %s (mode %s) is none of the bind sources %v: it exposes more than they", e, efi.Mode(), binds)
			continue
		}
		if filepath.Base(e) != filepath.Base(binds[i].Source) {
			t.Errorf("share entry %s of %s: want the source's name", e, binds[i].Source)
		}
		err = unix.Access(path, unix.W_OK)
		if ro := slices.Contains(binds[i].Options, "ro"); ro != errors.Is(err, unix.EROFS) {
			t.Errorf("share entry %s of %s on %s (options %v): access(W_OK): %v", e, binds[i].Source, binds[i].Destination, binds[i].Options, err)
		} else if ro {
			readOnly++
		}
	}
	if readOnly == 0 {
		t.Errorf("no read-only share entry among %d: the spec's read-only mount is missing (binds %v)", len(entries), binds)
	}
}

// testPodmanNamedVolume: a named volume written by one container is read
// by another running at the same time; each sees the other's writes as
// they happen, and the host sees both in the volume's directory.
func testPodmanNamedVolume(t *testing.T, p *podman, fs string) {
	tok := uniqueToken(t)
	vol := "initos-vol-" + fs
	p.ok(t, "volume", "create", vol)
	// Registered first, so it runs after the containers' removal.
	t.Cleanup(func() {
		if r := p.run(t, nil, "volume", "rm", "--force", vol); r.code != 0 {
			t.Errorf("podman volume rm %s: exit %d: %s", vol, r.code, r.stderr)
		}
	})
	mountpoint := p.ok(t, "volume", "inspect", "--format", "{{.Mountpoint}}", vol)
	a, b := "initos-vol-a-"+fs, "initos-vol-b-"+fs
	p.removeLater(t, a)
	p.removeLater(t, b)
	// a writes a seed, then a counter (renamed into place: never read half
	// written) five times a second. Both boot at once: b reads a's seed
	// only once a's counter is there.
	type started struct {
		id  string
		err error
	}
	startB := make(chan started, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
		defer cancel()
		var stderr strings.Builder
		cmd := p.command(ctx, "run", "-d", "--name", b, "--network", "none", "-v", vol+":/data", podmanImage, "sleep", "3600")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			err = fmt.Errorf("podman run -d --name %s: %v (deadline %s); stderr:\n%s", b, err, podmanTimeout, stderr.String())
		}
		startB <- started{strings.TrimSpace(string(out)), err}
	}()
	rA := p.run(t, nil, "run", "-d", "--name", a, "--network", "none", "-v", vol+":/data", podmanImage, "sh", "-c",
		"echo seed-"+tok+" > /data/seed; i=0; while :; do i=$((i+1)); echo $i > /data/.counter && mv /data/.counter /data/counter; sleep 0.2; done")
	sB := <-startB
	if rA.code != 0 {
		t.Fatalf("podman run -d --name %s: exit %d; stderr:\n%s", a, rA.code, rA.stderr)
	}
	if sB.err != nil {
		t.Fatal(sB.err)
	}
	idA, idB := strings.TrimSpace(string(rA.stdout)), sB.id
	poll(t, settleTimeout, "the first container's counter in the volume on the host", func() (bool, string) {
		_, err := os.Stat(filepath.Join(mountpoint, "counter"))
		return err == nil, fmt.Sprint(err)
	})
	shIn := func(name string) guestShell {
		return func(t *testing.T, script string, flags ...string) result {
			t.Helper()
			return p.run(t, nil, append(append(append([]string{"exec"}, flags...), name), "sh", "-c", script)...)
		}
	}
	if p.initos {
		checkShareFS(t, shIn(b), fs, "/data")
	}
	if got := shIn(b).must(t, "cat /data/seed"); got != "seed-"+tok+"\n" {
		t.Errorf("the second container reads %q from the volume, want the first one's %q", got, "seed-"+tok+"\n")
	}
	counter := func() int {
		t.Helper()
		out := shIn(b).must(t, "cat /data/counter")
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("the second container reads counter %q from the volume: want a number", out)
		}
		return n
	}
	first := counter()
	poll(t, settleTimeout, "the first container's next counter in the second container", func() (bool, string) {
		n := counter()
		return n > first, fmt.Sprintf("counter %d, first read %d", n, first)
	})
	content := "from-b-" + tok + "\n"
	shIn(b).must(t, "printf %s "+shellQuote(content)+" > /data/from-b")
	if got := shIn(a).must(t, "cat /data/from-b"); got != content {
		t.Errorf("the first container reads %q right after the second wrote %q", got, content)
	}
	removeChecked(t, p, a, idA)
	removeChecked(t, p, b, idB)
	// The volume outlives its containers.
	for file, want := range map[string]string{"seed": "seed-" + tok + "\n", "from-b": content} {
		if got, err := os.ReadFile(filepath.Join(mountpoint, file)); err != nil || string(got) != want {
			t.Errorf("host: %s in the volume is %q (%v) once its containers are gone, want %q", file, got, err, want)
		}
	}
}

// uniqueToken is a random token, for names and contents unique to a test.
func uniqueToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// hostViewRoot is the root of the host's view of monitor pid: that of one
// of its threads other than the main one (the main thread has the
// container's view, docs/architecture.md).
func hostViewRoot(t *testing.T, pid string) string {
	t.Helper()
	tasks, err := os.ReadDir(filepath.Join("/proc", pid, "task"))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if task.Name() != pid {
			return filepath.Join("/proc", pid, "task", task.Name(), "root")
		}
	}
	t.Fatalf("monitor %s has no thread but its main one", pid)
	return ""
}
