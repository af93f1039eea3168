package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Issue 11: a container's root filesystem writes go to the engine's
// storage, as under runc: they survive stop and start, and podman diff,
// cp, commit and build see them. Every check runs the same commands under
// runc and under initos-runtime (bothRuntimes) and compares what each one
// shows; each subtest is named after its runtime, so
// `-run 'TestPodmanRootfsWrites/.*/runc'` checks the test against runc
// alone (the comparisons then skip).

// rootfsFixtureImage is podmanImage with one more layer, rootfsFixture:
// lower files and directories for the containers to change.
const rootfsFixtureImage = "localhost/initos-rootfs-fixture:latest"

// rootfsPauseArgs runs until SIGTERM, then exits 0: `podman stop` is
// quick under both runtimes (runc makes it PID 1, which ignores a TERM it
// has no handler for).
var rootfsPauseArgs = []string{"sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"}

// fixtureEntry is one entry of the fixture layer.
type fixtureEntry struct {
	path     string // relative to the root
	typ      byte   // tar.TypeDir, TypeReg, TypeSymlink, TypeLink
	mode     int64  // permission bits with setuid, setgid, sticky
	uid, gid int
	content  string // of a file; a link's target (a hardlink's: a path of the layer)
}

// rootfsFixture is the fixture layer: what rootfsChanges changes.
var rootfsFixture = []fixtureEntry{
	{path: "etc/d", typ: tar.TypeDir, mode: 0o755},
	{path: "etc/d/a", typ: tar.TypeReg, mode: 0o644, content: "a\n"},
	{path: "etc/d/sub", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1000},
	{path: "etc/d/sub/b", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, content: "b\n"},
	{path: "etc/victim", typ: tar.TypeReg, mode: 0o644, content: "delete me\n"},
	{path: "etc/modeme", typ: tar.TypeReg, mode: 0o644, content: "chmod me\n"},
	{path: "etc/owned", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1000, content: "owned\n"},
	{path: "etc/suid", typ: tar.TypeReg, mode: 0o4755, content: "suid\n"},
	{path: "etc/linkme", typ: tar.TypeReg, mode: 0o644, content: "link me\n"},
	{path: "etc/renameme", typ: tar.TypeReg, mode: 0o600, content: "rename me\n"},
	{path: "etc/mvdir", typ: tar.TypeDir, mode: 0o710, uid: 1000, gid: 1000},
	{path: "etc/mvdir/x", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1000, content: "x\n"},
	{path: "etc/lsym", typ: tar.TypeSymlink, mode: 0o777, content: "d"},
	{path: "opt", typ: tar.TypeDir, mode: 0o755},
	{path: "opt/hl1", typ: tar.TypeReg, mode: 0o644, content: "hardlinked\n"},
	{path: "opt/hl2", typ: tar.TypeLink, mode: 0o644, content: "opt/hl1"},
}

// rootfsChanges are the writes every container (and the build's RUN step)
// makes, as one shell line each.
var rootfsChanges = []string{
	"mkdir /data",
	"echo data-f > /data/f", // a new file
	"rm /etc/victim",        // a lower file deleted (whiteout)
	"rm -rf /etc/d",         // a lower directory replaced (opaque)...
	"mkdir /etc/d",
	"echo new > /etc/d/new",           // ...with a new file in it
	"chmod 4750 /etc/modeme",          // a lower file's mode, setuid
	"chown 0:1000 /etc/owned",         // a lower file's owner
	"echo more >> /etc/suid",          // a lower setuid file written
	"ln -s /data/f /data/link",        // a symlink
	"ln /data/f /data/hard",           // a hardlink of a new file
	"ln /etc/linkme /etc/linkme-hard", // a hardlink of a lower file
	"mv /etc/renameme /etc/renamed",   // a lower file renamed
	"mv /etc/mvdir /etc/mvdir2",       // a lower directory renamed (overlay: EXDEV, mv copies)
	"rm /etc/lsym && mkdir /etc/lsym", // a lower symlink becomes a directory
	"echo changed >> /opt/hl1",        // one name of a lower hardlink pair written
	"mkfifo /data/fifo",               // a fifo
	"sync",
}

// rootfsChangesScript is rootfsChanges as one shell command line.
func rootfsChangesScript() string { return "set -e; " + strings.Join(rootfsChanges, "; ") }

// rootfsStateScript prints what rootfsChanges made, one fact a line.
const rootfsStateScript = `cd /
for f in data/f data/hard data/link etc/modeme etc/owned etc/suid etc/linkme etc/linkme-hard etc/renamed etc/mvdir2/x opt/hl1 opt/hl2 etc/d/new; do
  echo "$f: $(stat -c '%F %a %u:%g %h' $f) $(tr '\n' '|' < $f)"
done
echo "data: $(stat -c '%F %a %u:%g' data)"
for d in etc/d etc/lsym etc/mvdir2; do echo "$d: $(stat -c '%F %a %u:%g' $d): $(ls -A $d | tr '\n' ' ')"; done
for f in etc/victim etc/renameme etc/mvdir etc/d/a etc/d/sub; do if [ -e $f ] || [ -L $f ]; then echo "$f present"; else echo "$f absent"; fi; done
echo "data/link -> $(readlink data/link)"
echo "data/fifo: $(stat -c %F data/fifo)"
if [ data/f -ef data/hard ]; then echo "data/f = data/hard"; fi
if [ etc/linkme -ef etc/linkme-hard ]; then echo "etc/linkme = etc/linkme-hard"; fi
if [ opt/hl1 -ef opt/hl2 ]; then echo "opt/hl1 = opt/hl2"; else echo "opt/hl1 != opt/hl2"; fi
`

// rootfsStateWant is rootfsStateScript's output after rootfsChanges.
const rootfsStateWant = `data/f: regular file 644 0:0 2 data-f|
data/hard: regular file 644 0:0 2 data-f|
data/link: symbolic link 777 0:0 1 data-f|
etc/modeme: regular file 4750 0:0 1 chmod me|
etc/owned: regular file 640 0:1000 1 owned|
etc/suid: regular file 4755 0:0 1 suid|more|
etc/linkme: regular file 644 0:0 2 link me|
etc/linkme-hard: regular file 644 0:0 2 link me|
etc/renamed: regular file 600 0:0 1 rename me|
etc/mvdir2/x: regular file 640 1000:1000 1 x|
opt/hl1: regular file 644 0:0 1 hardlinked|changed|
opt/hl2: regular file 644 0:0 2 hardlinked|
etc/d/new: regular file 644 0:0 1 new|
data: directory 755 0:0
etc/d: directory 755 0:0: new 
etc/lsym: directory 755 0:0: 
etc/mvdir2: directory 710 1000:1000: x 
etc/victim absent
etc/renameme absent
etc/mvdir absent
etc/d/a absent
etc/d/sub absent
data/link -> /data/f
data/fifo: fifo
data/f = data/hard
etc/linkme = etc/linkme-hard
opt/hl1 != opt/hl2
`

// rootfsGuestLag is how long a host write (podman cp into a running
// container) may take to show in the container: the guest caches
// metadata for about 1 s.
const rootfsGuestLag = 3 * time.Second

// TestPodmanRootfsWrites: root filesystem writes under runc and
// initos-runtime, compared. One podman setup per runtime (bothRuntimes)
// serves the subtests, which run in parallel; under initos-runtime they
// boot 6 VMs in all.
func TestPodmanRootfsWrites(t *testing.T) {
	runtimes, pods := bothRuntimes(t)
	for _, rt := range runtimes {
		buildRootfsFixture(t, pods[rt])
	}
	t.Run("persist-cp-diff-commit", func(t *testing.T) {
		t.Parallel()
		res := map[string]rootfsPersistResult{}
		for _, rt := range runtimes {
			t.Run(rt, func(t *testing.T) { res[rt] = testRootfsPersist(t, pods[rt]) })
		}
		if r, i, ok := bothRan(t, res); ok {
			compareLines(t, "podman diff of the running container", r.diffRunning, i.diffRunning)
			compareLines(t, "podman diff of the stopped container", r.diffStopped, i.diffStopped)
			compareLines(t, "listing of the committed image", r.commit, i.commit)
		}
	})
	t.Run("build", func(t *testing.T) {
		t.Parallel()
		res := map[string][]string{}
		for _, rt := range runtimes {
			t.Run(rt, func(t *testing.T) { res[rt] = testRootfsBuild(t, pods[rt]) })
		}
		if r, i, ok := bothRan(t, res); ok {
			compareLines(t, "listing of the built image", r, i)
		}
	})
	t.Run("two-containers-sync-kill", func(t *testing.T) {
		t.Parallel()
		res := map[string]rootfsTwoResult{}
		for _, rt := range runtimes {
			t.Run(rt, func(t *testing.T) { res[rt] = testRootfsTwoContainers(t, pods[rt]) })
		}
		if r, i, ok := bothRan(t, res); ok {
			compareLines(t, "podman diff of the killed container", r.diffKilled, i.diffKilled)
			compareLines(t, "podman diff of the other container", r.diffOther, i.diffOther)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		t.Parallel()
		res := map[string]rootfsReadOnlyResult{}
		for _, rt := range runtimes {
			t.Run(rt, func(t *testing.T) { res[rt] = testRootfsReadOnly(t, pods[rt]) })
		}
		if r, i, ok := bothRan(t, res); ok {
			if r.out != i.out {
				t.Errorf("--read-only: runc and initos-runtime differ\nrunc:\n%s\ninitos-runtime:\n%s", r.out, i.out)
			}
			compareLines(t, "podman diff of the --read-only container", r.diff, i.diff)
		}
	})
}

// bothRan returns the results of runc and initos from res once both
// subtests got to their end (their checks may have failed: the
// comparison still tells how the runtimes differ); a -run filter that ran
// only one, or a subtest that stopped early, skips the comparison.
func bothRan[R any](t *testing.T, res map[string]R) (runc, initos R, ok bool) {
	t.Helper()
	runc, okR := res["runc"]
	initos, okI := res["initos"]
	if !okR || !okI {
		t.Logf("runc's subtest finished: %v, initos-runtime's: %v: no comparison", okR, okI)
		return runc, initos, false
	}
	return runc, initos, true
}

// compareLines fails t unless runc's and initos's lines are the same set,
// and names the lines only one of them has.
func compareLines(t *testing.T, what string, runc, initos []string) {
	t.Helper()
	compareSets(t, what, "under runc", runc, "under initos-runtime", initos)
}

// compareSets fails t unless lines a (named an) and b (bn) are the same
// set, and names the lines only one of them has.
func compareSets(t *testing.T, what, an string, a []string, bn string, b []string) {
	t.Helper()
	in := func(lines []string) map[string]bool {
		m := map[string]bool{}
		for _, l := range lines {
			m[l] = true
		}
		return m
	}
	am, bm := in(a), in(b)
	var onlyA, onlyB []string
	for l := range am {
		if !bm[l] {
			onlyA = append(onlyA, l)
		}
	}
	for l := range bm {
		if !am[l] {
			onlyB = append(onlyB, l)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	if len(onlyA)+len(onlyB) > 0 {
		t.Errorf("%s: %s and %s differ\nonly %s:\n  %s\nonly %s:\n  %s",
			what, an, bn, an, strings.Join(onlyA, "\n  "), bn, strings.Join(onlyB, "\n  "))
		return
	}
	t.Logf("%s: %d lines, the same %s and %s", what, len(am), an, bn)
}

// buildRootfsFixture builds rootfsFixtureImage in p's store: podmanImage
// and an ADD of the fixture's tar (no RUN step: no runtime runs).
func buildRootfsFixture(t *testing.T, p *podman) {
	t.Helper()
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range rootfsFixture {
		h := &tar.Header{Name: e.path, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime, Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.content))
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = e.content
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.content)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fixture.tar"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cf := "FROM " + podmanImage + "\nADD fixture.tar /\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.ok(t, "build", "--network", "none", "-f", filepath.Join(dir, "Containerfile"), "-t", rootfsFixtureImage, dir)
}

// runFixture starts `podman run -d` of the fixture image running
// rootfsPauseArgs, with opts, as container name (removed when t ends), and
// returns its ID.
func runFixture(t *testing.T, p *podman, name string, opts ...string) string {
	t.Helper()
	p.removeLater(t, name)
	args := append(append([]string{"run", "-d", "--name", name, "--network", "none"}, opts...), rootfsFixtureImage)
	return p.ok(t, append(args, rootfsPauseArgs...)...)
}

// execShell is a guestShell of `podman exec` in container name.
func execShell(p *podman, name string) guestShell {
	return func(t *testing.T, script string, flags ...string) result {
		t.Helper()
		return p.run(t, nil, append(append(append([]string{"exec"}, flags...), name), "sh", "-c", script)...)
	}
}

// checkState fails t unless rootfsStateScript in container name prints
// rootfsStateWant.
func checkState(t *testing.T, p *podman, name, when string) {
	t.Helper()
	if got, want := execShell(p, name).must(t, rootfsStateScript), rootfsStateWant; got != want {
		t.Errorf("%s: the container's root filesystem:\n%s\nwant:\n%s", when, got, want)
	}
}

// diffLines is `podman diff name` as sorted lines.
func diffLines(t *testing.T, p *podman, name string) []string {
	t.Helper()
	out := p.ok(t, "diff", name)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(lines)
	return lines
}

// rootfsDiffWant is what podman diff shows (runc's, podman 4.3) after
// rootfsChanges. A replaced lower directory (opaque) shows as deleted with
// its new entries added, and a lower symlink that became an empty
// directory as deleted only; a lower file hardlinked to was copied up
// ("C /etc/linkme"); a lower directory renamed shows as deleted and its
// copy, with its contents, as added.
var rootfsDiffWant = []string{
	"A /data", "A /data/f", "A /data/fifo", "A /data/hard", "A /data/link",
	"A /etc/d/new", "A /etc/linkme-hard", "A /etc/mvdir2", "A /etc/mvdir2/x", "A /etc/renamed",
	"C /etc", "C /etc/linkme", "C /etc/modeme", "C /etc/owned", "C /etc/suid", "C /opt/hl1",
	"D /etc/d", "D /etc/lsym", "D /etc/mvdir", "D /etc/renameme", "D /etc/victim",
}

// checkDiff fails t unless diff has the lines of want, no more, no less.
func checkDiff(t *testing.T, what string, diff, want []string) {
	t.Helper()
	have, wanted := map[string]bool{}, map[string]bool{}
	for _, l := range diff {
		have[l] = true
	}
	var missing, extra []string
	for _, w := range want {
		wanted[w] = true
		if !have[w] {
			missing = append(missing, w)
		}
	}
	for _, l := range diff {
		if !wanted[l] {
			extra = append(extra, l)
		}
	}
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s: lines missing: %q; lines not expected: %q; podman diff:\n%s", what, missing, extra, strings.Join(diff, "\n"))
	}
}

// checkCpIsolation: podman cp of a running container works in the mount
// (and PID) namespace of the container's pid, with paths from that
// namespace's root (podman 4.3's joinMountAndExec and resolveCopyTarget):
// under runc the container's root. A path that exists on the host only
// must be neither read nor written through it. src is a host file to copy.
func checkCpIsolation(t *testing.T, p *podman, name, src string) {
	t.Helper()
	hostDir := t.TempDir()
	hostOnly := filepath.Join(hostDir, "host-only")
	if err := os.WriteFile(hostOnly, []byte("host-only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if r := p.run(t, nil, "cp", name+":"+hostOnly, out); r.code == 0 {
		b, _ := os.ReadFile(filepath.Join(out, "host-only"))
		t.Errorf("podman cp %s:%s out of the running container succeeded (got %q): it read the host's file, not the container's", name, hostOnly, b)
	}
	leak := filepath.Join(hostDir, "leak")
	r := p.run(t, nil, "cp", src, name+":"+leak)
	if _, err := os.Lstat(leak); err == nil {
		t.Errorf("podman cp %s %s:%s into the running container (exit %d) wrote the host's %s", src, name, leak, r.code, leak)
	}
}

// checkMounted checks the content of files (paths relative to the root)
// of container name on the host, through `podman mount`.
func checkMounted(t *testing.T, p *podman, name, what string, files map[string]string) {
	t.Helper()
	mnt := p.ok(t, "mount", name)
	defer p.ok(t, "umount", name)
	for path, want := range files {
		if got, err := os.ReadFile(filepath.Join(mnt, path)); err != nil || string(got) != want {
			t.Errorf("podman mount of %s: /%s is %q (%v), want %q", what, path, got, err, want)
		}
	}
}

// checkHostRewrite: a file the container has written and read, then
// rewritten in place on the host (the engine's storage: same inode, same
// size, new content), shows its new content in the container within
// rootfsGuestLag: a guest that kept the file's pages across opens (a
// virtiofsd cache mode other than cache=auto's) would go on reading them.
// The file is removed again, leaving podman diff as it was.
func checkHostRewrite(t *testing.T, p *podman, name string, sh guestShell) {
	t.Helper()
	if got := sh.must(t, "echo guest-k > /data/k && cat /data/k && cat /data/k"); got != "guest-k\nguest-k\n" {
		t.Errorf("/data/k written and read twice in the container: %q", got)
	}
	mnt := p.ok(t, "mount", name)
	err := os.WriteFile(filepath.Join(mnt, "data/k"), []byte("host-kk\n"), 0o644)
	p.ok(t, "umount", name)
	if err != nil {
		t.Fatalf("rewriting /data/k in the running container's storage: %v", err)
	}
	pollErr(t, rootfsGuestLag, "/data/k (rewritten in place on the host) in the container", func() (bool, string) {
		r := sh(t, "cat /data/k")
		return r.code == 0 && string(r.stdout) == "host-kk\n", fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	})
	sh.must(t, "rm /data/k")
}

// pollErr is poll with an error of t instead of a fatal one after timeout.
func pollErr(t *testing.T, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	if ok, last := pollUntil(timeout, f); !ok {
		t.Errorf("no %s within %s; last: %s", what, timeout, last)
	}
}

// cpOut is the content of path in container name through `podman cp`;
// a failed copy is an error of t (the test goes on: what follows tells
// more) and its content reads as "(podman cp failed)".
func cpOut(t *testing.T, p *podman, name, path string) string {
	t.Helper()
	dir := t.TempDir()
	if r := p.run(t, nil, "cp", name+":"+path, dir); r.code != 0 {
		t.Errorf("podman cp %s:%s %s: exit %d; stderr:\n%s", name, path, dir, r.code, r.stderr)
		return "(podman cp failed)"
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.Base(path)))
	if err != nil {
		t.Errorf("podman cp %s:%s %s: %v", name, path, dir, err)
		return "(podman cp failed)"
	}
	return string(b)
}

type rootfsPersistResult struct {
	diffRunning, diffStopped []string
	commit                   []string // listing of the committed image
}

// testRootfsPersist: one container writes rootfsChanges through exec;
// podman cp reads them while it runs and after it stopped, and writes into
// it while it runs; podman diff shows them; they survive stop and start;
// podman commit of the running container holds them.
func testRootfsPersist(t *testing.T, p *podman) rootfsPersistResult {
	var res rootfsPersistResult
	name := "initos-rw-persist"
	id := runFixture(t, p, name)
	sh := execShell(p, name)
	sh.must(t, rootfsChangesScript())
	checkState(t, p, name, "after the writes")

	// The host's view of the running container's root: podman mount (the
	// engine's storage itself), and podman cp (which, for a running
	// container, works in the mount namespace of the container's pid).
	checkMounted(t, p, name, "the running container", map[string]string{"data/f": "data-f\n", "etc/suid": "suid\nmore\n"})
	if got := cpOut(t, p, name, "/data/f"); got != "data-f\n" {
		t.Errorf("podman cp of /data/f out of the running container: %q, want %q", got, "data-f\n")
	}
	src := filepath.Join(t.TempDir(), "g")
	if err := os.WriteFile(src, []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkCpIsolation(t, p, name, src)
	cpIn := p.run(t, nil, "cp", src, name+":/data/g")
	if cpIn.code != 0 {
		t.Errorf("podman cp %s %s:/data/g: exit %d; stderr:\n%s", src, name, cpIn.code, cpIn.stderr)
		// The checks below expect it.
		sh.must(t, "echo from-host > /data/g")
	} else {
		pollErr(t, rootfsGuestLag, "/data/g (podman cp into the running container) in the container", func() (bool, string) {
			r := sh(t, "cat /data/g")
			return r.code == 0 && string(r.stdout) == "from-host\n", fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		})
	}
	checkHostRewrite(t, p, name, sh)
	res.diffRunning = diffLines(t, p, name)
	checkDiff(t, "podman diff of the running container", res.diffRunning, append(rootfsDiffWant, "A /data/g"))

	p.ok(t, "stop", "--time", "30", name)
	if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 0" {
		t.Errorf("state %q after podman stop, want exited 0", got)
	}
	for path, want := range map[string]string{"/data/f": "data-f\n", "/data/g": "from-host\n", "/etc/suid": "suid\nmore\n"} {
		if got := cpOut(t, p, name, path); got != want {
			t.Errorf("podman cp of %s out of the stopped container: %q, want %q", path, got, want)
		}
	}
	res.diffStopped = diffLines(t, p, name)
	compareSets(t, "podman diff", "while running", res.diffRunning, "once stopped", res.diffStopped)

	p.ok(t, "start", name)
	checkState(t, p, name, "after podman stop and start")
	if got := sh.must(t, "cat /data/g"); got != "from-host\n" {
		t.Errorf("/data/g after podman stop and start: %q, want %q", got, "from-host\n")
	}
	// A write after the restart shows on the host at once.
	sh.must(t, "echo after-restart > /data/h")
	checkMounted(t, p, name, "the restarted container", map[string]string{"data/h": "after-restart\n", "data/g": "from-host\n"})

	img := "localhost/initos-rw-committed:latest"
	p.ok(t, "commit", "--quiet", name, img)
	res.commit = imageListing(t, p, img)
	checkListing(t, "the committed image", res.commit, rootfsListingWant(), rootfsListingAbsent)
	checkListing(t, "the committed image", res.commit, []string{
		listingLine("/data/g", tar.TypeReg, 0o644, 0, 0, "from-host\n", 1),
		listingLine("/data/h", tar.TypeReg, 0o644, 0, 0, "after-restart\n", 1),
	}, nil)

	p.ok(t, "rm", "--force", "--time", "0", name)
	p.assertRemoved(t, id)
	return res
}

// testRootfsBuild: `podman build --runtime` of a Containerfile whose RUN
// step makes rootfsChanges; it returns the image's listing.
func testRootfsBuild(t *testing.T, p *podman) []string {
	dir := t.TempDir()
	cf := "FROM " + rootfsFixtureImage + "\nRUN " + rootfsChangesScript() + "\n"
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	img := "localhost/initos-rw-built:latest"
	args := []string{"build", "--no-cache", "--runtime", p.runtime, "--network", "none", "-f", filepath.Join(dir, "Containerfile"), "-t", img, dir}
	r := p.run(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("podman %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	listing := imageListing(t, p, img)
	checkListing(t, "the built image", listing, rootfsListingWant(), rootfsListingAbsent)
	return listing
}

// rootfsTwoDiffWant is podman diff of container name of
// testRootfsTwoContainers, with more lines.
func rootfsTwoDiffWant(name string, more ...string) []string {
	return append([]string{"A /data", "A /data/only-" + name, "A /data/who", "C /etc", "C /etc/victim", "D /etc/linkme"}, more...)
}

type rootfsTwoResult struct {
	diffKilled, diffOther []string
}

// testRootfsTwoContainers: two containers of one image run at once, each
// writes, and each sees its own writes only. Then one syncs and its VMM
// (under runc: its process) is killed by SIGKILL: what it synced is in
// the engine's storage (podman mount, podman cp), and the other container
// runs on unchanged.
func testRootfsTwoContainers(t *testing.T, p *podman) rootfsTwoResult {
	var res rootfsTwoResult
	a, b := "initos-rw-a", "initos-rw-b"
	ids := map[string]string{}
	// Both boot at once.
	errs := make(chan error, 2)
	for _, name := range []string{a, b} {
		p.removeLater(t, name)
		go func() {
			// Not p.run: its t.Fatal belongs to the test's goroutine.
			args := append([]string{"run", "-d", "--name", name, "--network", "none", rootfsFixtureImage}, rootfsPauseArgs...)
			ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
			defer cancel()
			if out, err := p.command(ctx, args...).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("podman %s: %v; output:\n%s", strings.Join(args, " "), err, out)
				return
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{a, b} {
		ids[name] = p.inspect(t, name, "{{.Id}}")
	}
	// Each writes its name into /data/who and over the lower /etc/victim,
	// a file of its own, and removes /etc/linkme.
	for _, name := range []string{a, b} {
		execShell(p, name).must(t, fmt.Sprintf("mkdir /data; echo %[1]s > /data/who; echo %[1]s > /etc/victim; echo %[1]s > /data/only-%[1]s; rm /etc/linkme", name))
	}
	seen := func(name string) string {
		return execShell(p, name).must(t, "cat /data/who /etc/victim; ls /data; if [ -e /etc/linkme ]; then echo linkme; fi")
	}
	for _, name := range []string{a, b} {
		if got, want := seen(name), fmt.Sprintf("%[1]s\n%[1]s\nonly-%[1]s\nwho\n", name); got != want {
			t.Errorf("container %s sees %q, want %q (its own writes only)", name, got, want)
		}
	}

	// a: a synced file, then SIGKILL.
	execShell(p, a).must(t, "echo synced > /data/synced; sync")
	if p.initos {
		killVMM(t, p.stateDir(ids[a]))
	} else {
		pid, err := strconv.Atoi(p.inspect(t, a, "{{.State.Pid}}"))
		if err != nil || pid <= 0 {
			t.Fatalf("pid of %s: %d (%v)", a, pid, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL of %s's process %d: %v", a, pid, err)
		}
	}
	if got := p.ok(t, "wait", a); got != "137" {
		t.Errorf("podman wait %s printed %q after the SIGKILL, want 137", a, got)
	}
	if got := cpOut(t, p, a, "/data/synced"); got != "synced\n" {
		t.Errorf("podman cp of /data/synced out of the killed container: %q, want %q", got, "synced\n")
	}
	checkMounted(t, p, a, "the killed container", map[string]string{"data/synced": "synced\n", "data/who": a + "\n", "etc/victim": a + "\n"})
	res.diffKilled = diffLines(t, p, a)
	checkDiff(t, "podman diff of the killed container", res.diffKilled, rootfsTwoDiffWant(a, "A /data/synced"))

	// b runs on, with its own writes only.
	if got := p.inspect(t, b, "{{.State.Status}}"); got != "running" {
		t.Errorf("container %s is %s after %s was killed, want running", b, got, a)
	}
	if got, want := seen(b), fmt.Sprintf("%[1]s\n%[1]s\nonly-%[1]s\nwho\n", b); got != want {
		t.Errorf("container %s sees %q after %s was killed, want %q", b, got, a, want)
	}
	res.diffOther = diffLines(t, p, b)
	checkDiff(t, "podman diff of the other container", res.diffOther, rootfsTwoDiffWant(b))
	for _, name := range []string{a, b} {
		p.ok(t, "rm", "--force", "--time", "0", name)
		p.assertRemoved(t, ids[name])
	}
	return res
}

// rootfsReadOnlyScript tries writes to the root filesystem and prints the
// error of each, then writes to /tmp (podman's tmpfs under --read-only).
const rootfsReadOnlyScript = `for op in "echo x > /newfile" "echo x >> /etc/victim" "mkdir /newdir" "rm /etc/victim" "touch /etc/modeme" "chmod 600 /etc/modeme" "ln -s x /newlink"; do
  if sh -c "$op" 2>/tmp/err; then echo "$op: succeeded"; else echo "$op: $(cat /tmp/err)"; fi
done
echo x > /tmp/x && echo "tmp writable"`

type rootfsReadOnlyResult struct {
	out  string   // what the container printed
	diff []string // podman diff of the container once it ended
}

// testRootfsReadOnly: with --read-only every write to the root fails with
// EROFS, and /tmp (podman's tmpfs) is writable.
func testRootfsReadOnly(t *testing.T, p *podman) rootfsReadOnlyResult {
	var res rootfsReadOnlyResult
	name := "initos-rw-read-only"
	p.removeLater(t, name)
	args := []string{"run", "--name", name, "--network", "none", "--read-only", rootfsFixtureImage, "sh", "-c", rootfsReadOnlyScript}
	r := p.run(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("podman %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	res.out = string(r.stdout)
	lines := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	if len(lines) != 8 || lines[7] != "tmp writable" {
		t.Fatalf("want 7 failed writes and tmp writable, got:\n%s", res.out)
	}
	for _, l := range lines[:7] {
		if !strings.HasSuffix(l, "Read-only file system") {
			t.Errorf("a write to the read-only root did not fail with EROFS: %s", l)
		}
	}
	// runc makes the mount points the image lacks (podman's tmpfs on
	// /var/tmp; podman's own files in /etc) in the container's storage
	// before it makes the root read-only.
	res.diff = diffLines(t, p, name)
	checkDiff(t, "podman diff of the --read-only container", res.diff, []string{"A /var", "A /var/tmp", "C /etc"})
	return res
}

// rootfsExcluded are the paths (with what is under them) a listing leaves
// out: the engines' mount points and the API filesystems.
var rootfsExcluded = []string{"/proc", "/sys", "/dev", "/run", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab"}

// imageListing lists image's filesystem through `podman image mount`.
func imageListing(t *testing.T, p *podman, image string) []string {
	t.Helper()
	mnt := p.ok(t, "image", "mount", image)
	defer p.ok(t, "image", "unmount", image)
	return treeListing(t, mnt)
}

// treeListing is a line per entry under root but rootfsExcluded: its
// path, type, mode, owner, and a file's size, link count and digest or a
// symlink's target.
func treeListing(t *testing.T, root string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(path, root), "/")
		for _, x := range rootfsExcluded {
			if rel == x {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		var typ byte
		content, nlink := "", int(st.Nlink)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			typ = tar.TypeDir
		case syscall.S_IFREG:
			typ = tar.TypeReg
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			content = string(b)
		case syscall.S_IFLNK:
			typ = tar.TypeSymlink
			if content, err = os.Readlink(path); err != nil {
				return err
			}
		case syscall.S_IFIFO:
			typ = tar.TypeFifo
		case syscall.S_IFCHR:
			typ = tar.TypeChar
			content = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case syscall.S_IFBLK:
			typ = tar.TypeBlock
			content = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		default:
			return fmt.Errorf("%s: file type %o", path, st.Mode&syscall.S_IFMT)
		}
		lines = append(lines, listingLine(rel, typ, int64(st.Mode&0o7777), int(st.Uid), int(st.Gid), content, nlink))
		return nil
	})
	if err != nil {
		t.Fatalf("listing %s: %v", root, err)
	}
	return lines
}

// listingLine is treeListing's line of one entry (nlink counts for
// regular files only; content is a file's content, a symlink's target, a
// device's numbers).
func listingLine(path string, typ byte, mode int64, uid, gid int, content string, nlink int) string {
	l := fmt.Sprintf("%s %s %04o %d:%d", path, map[byte]string{
		tar.TypeDir: "dir", tar.TypeReg: "file", tar.TypeSymlink: "symlink", tar.TypeFifo: "fifo", tar.TypeChar: "char", tar.TypeBlock: "block",
	}[typ], mode, uid, gid)
	switch typ {
	case tar.TypeReg:
		sum := sha256.Sum256([]byte(content))
		l += fmt.Sprintf(" size=%d nlink=%d sha256=%s", len(content), nlink, hex.EncodeToString(sum[:8]))
	case tar.TypeSymlink:
		l += " -> " + content
	case tar.TypeChar, tar.TypeBlock:
		l += " " + content
	}
	return l
}

// rootfsListingWant are lines an image made of the fixture and
// rootfsChanges must list.
func rootfsListingWant() []string {
	return []string{
		listingLine("/data", tar.TypeDir, 0o755, 0, 0, "", 0),
		listingLine("/data/f", tar.TypeReg, 0o644, 0, 0, "data-f\n", 2),
		listingLine("/data/hard", tar.TypeReg, 0o644, 0, 0, "data-f\n", 2),
		listingLine("/data/link", tar.TypeSymlink, 0o777, 0, 0, "/data/f", 0),
		listingLine("/data/fifo", tar.TypeFifo, 0o644, 0, 0, "", 0),
		listingLine("/etc/d", tar.TypeDir, 0o755, 0, 0, "", 0),
		listingLine("/etc/d/new", tar.TypeReg, 0o644, 0, 0, "new\n", 1),
		listingLine("/etc/modeme", tar.TypeReg, 0o4750, 0, 0, "chmod me\n", 1),
		listingLine("/etc/owned", tar.TypeReg, 0o640, 0, 1000, "owned\n", 1),
		listingLine("/etc/suid", tar.TypeReg, 0o4755, 0, 0, "suid\nmore\n", 1),
		listingLine("/etc/linkme", tar.TypeReg, 0o644, 0, 0, "link me\n", 2),
		listingLine("/etc/linkme-hard", tar.TypeReg, 0o644, 0, 0, "link me\n", 2),
		listingLine("/etc/renamed", tar.TypeReg, 0o600, 0, 0, "rename me\n", 1),
		listingLine("/etc/mvdir2", tar.TypeDir, 0o710, 1000, 1000, "", 0),
		listingLine("/etc/mvdir2/x", tar.TypeReg, 0o640, 1000, 1000, "x\n", 1),
		listingLine("/etc/lsym", tar.TypeDir, 0o755, 0, 0, "", 0),
		listingLine("/opt/hl1", tar.TypeReg, 0o644, 0, 0, "hardlinked\nchanged\n", 1),
		listingLine("/opt/hl2", tar.TypeReg, 0o644, 0, 0, "hardlinked\n", 2),
	}
}

// rootfsListingAbsent are paths an image made of the fixture and
// rootfsChanges must not list.
var rootfsListingAbsent = []string{"/etc/victim", "/etc/renameme", "/etc/mvdir", "/etc/d/a", "/etc/d/sub"}

// checkListing fails t unless listing has every line of want and no path
// of absent.
func checkListing(t *testing.T, what string, listing, want, absent []string) {
	t.Helper()
	have, paths := map[string]bool{}, map[string]bool{}
	for _, l := range listing {
		have[l] = true
		paths[strings.SplitN(l, " ", 2)[0]] = true
	}
	var missing, present []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	for _, a := range absent {
		if paths[a] {
			present = append(present, a)
		}
	}
	if len(missing)+len(present) > 0 {
		t.Errorf("%s: lines missing:\n  %s\npaths that should be gone: %v\nlisting:\n  %s",
			what, strings.Join(missing, "\n  "), present, strings.Join(listing, "\n  "))
	}
}
