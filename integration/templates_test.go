package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// TestTemplates runs containers with VM templates on (9p shares): the
// first start of the shape boots and saves its template, later ones
// restore it. Each clone is a VM of its own (its clock the host's, its
// random generator reseeded), writes reach the bundle's rootfs, stdio and
// exit statuses are as from a booted VM, and podman runs on it too.
func TestTemplates(t *testing.T) {
	needVMs(t)
	cfg := templatesConfig(t)
	// This test's templates only: its first run must be the one that
	// builds the shape's template.
	if err := os.RemoveAll(filepath.Join(env.cfg.DataDir, "templates")); err != nil {
		t.Fatal(err)
	}
	probe := `date +%s; cat /proc/sys/kernel/random/uuid /proc/sys/kernel/random/boot_id; echo from-the-clone > /written; exit 7`
	type out struct {
		clock        int64
		uuid, bootID string
	}
	run := func(id, wantOrigin string) out {
		t.Helper()
		s := busyboxSpec(t, "sh", "-c", probe)
		dir := writeBundle(t, s)
		r := runtimeCmdWith(t, cfg, nil, "run", "--timings", "--bundle", dir, id)
		if r.code != 7 {
			t.Fatalf("%s: exit %d, want 7; stderr:\n%s", id, r.code, r.stderr)
		}
		if !strings.Contains(string(r.stderr), wantOrigin) || strings.Contains(string(r.stderr), "warning") {
			t.Fatalf("%s: stderr does not say %q (or warns):\n%s", id, wantOrigin, r.stderr)
		}
		// The template's agent set up the guest's cgroups, started a
		// spare process helper (guestagent/spare_linux.go) and served a
		// Ping of its own (warmserve_linux.go) before its save.
		if !strings.Contains(string(r.stderr), " cgroups=") || !strings.Contains(string(r.stderr), " spare=") || !strings.Contains(string(r.stderr), " serve=") {
			t.Errorf("%s: the template's guest phases lack its cgroups, its spare helper or its warmed server:\n%s", id, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
		if len(lines) != 3 {
			t.Fatalf("%s: stdout %q", id, r.stdout)
		}
		clock, err := strconv.ParseInt(lines[0], 10, 64)
		if err != nil {
			t.Fatalf("%s: date printed %q", id, lines[0])
		}
		if d := time.Since(time.Unix(clock, 0)); d < -5*time.Second || d > 30*time.Second {
			t.Errorf("%s: the guest's clock is %s off the host's", id, d)
		}
		if b, err := os.ReadFile(filepath.Join(s.Root.Path, "written")); err != nil || string(b) != "from-the-clone\n" {
			t.Errorf("%s: the container's write in its rootfs: %q, %v", id, b, err)
		}
		assertNothingLeft(t, id)
		return out{clock, lines[1], lines[2]}
	}
	first := run("tpl-1", "restored from a template booted and saved by this start")
	// Older than the clock a clone restores from: a clone whose clock were
	// not set would print the template's time.
	time.Sleep(2 * time.Second)
	second := run("tpl-2", "restored from a template; its guest")
	third := run("tpl-3", "restored from a template; its guest")
	if first.uuid == second.uuid || second.uuid == third.uuid || first.uuid == third.uuid {
		t.Errorf("clones share their random generator: %q %q %q", first.uuid, second.uuid, third.uuid)
	}
	// The kernel makes boot_id at its first read: one the template read
	// before its save would be every clone's.
	if first.bootID == second.bootID || second.bootID == third.bootID || first.bootID == third.bootID {
		t.Errorf("clones share their boot_id: %q %q %q", first.bootID, second.bootID, third.bootID)
	}

	// stdin and a larger output through a clone.
	s := busyboxSpec(t, "sh", "-c", "cat; seq 1 20000 | tail -n 1")
	r := runtimeCmdWith(t, cfg, []byte("through-stdin\n"), "run", "--bundle", writeBundle(t, s), "tpl-stdin")
	if r.code != 0 || string(r.stdout) != "through-stdin\n20000\n" {
		t.Errorf("stdin through a clone: exit %d, %q; stderr %s", r.code, r.stdout, r.stderr)
	}

	// A template its clones cannot restore (its state damaged) is
	// dropped: the start warns and boots, the next one builds it again.
	states, _ := filepath.Glob(filepath.Join(env.cfg.DataDir, "templates", "*", "state"))
	if len(states) != 1 {
		t.Fatalf("templates: %v", states)
	}
	if err := os.WriteFile(states[0], []byte("not a migration stream"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = busyboxSpec(t, "echo", "booted")
	r = runtimeCmdWith(t, cfg, nil, "run", "--timings", "--bundle", writeBundle(t, s), "tpl-damaged")
	if r.code != 0 || string(r.stdout) != "booted\n" || !strings.Contains(string(r.stderr), "starting from a template") ||
		!strings.Contains(string(r.stderr), "booting instead") || strings.Contains(string(r.stderr), "restored from") {
		t.Errorf("a damaged template: exit %d, %q; stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	run("tpl-4", "restored from a template booted and saved by this start")

	// podman, the VM started from the template: no boot on its console.
	p := newPodmanWithConfig(t, cfg)
	if r := p.run(t, nil, "run", "--rm", "--network", "none", podmanImage, "sh", "-c", "echo hi; exit 3"); r.code != 3 || string(r.stdout) != "hi\n" {
		t.Errorf("podman run: exit %d, %q; stderr %s", r.code, r.stdout, r.stderr)
	}
	id := p.detached(t, "tpl-podman", "sleep", "3600")
	console := filepath.Join(p.stateRoot, id, "console.log")
	b, err := os.ReadFile(console)
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`Linux version`).Match(b) {
		t.Errorf("podman's container booted instead of restoring a template; console:\n%s", b)
	}
	if out := p.ok(t, "exec", "tpl-podman", "echo", "exec-ok"); out != "exec-ok" {
		t.Errorf("podman exec: %q", out)
	}
	p.ok(t, "stop", "-t", "1", "tpl-podman")

	// A network of podman's: the engine configured the container's
	// namespace before create; a clone gets its address after the restore.
	requireProgram(t, "aardvark-dns", "aardvark-dns", "/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%100000)
	netName, srv := "initos-tpl-"+suffix, "initos-tpl-srv-"+suffix
	p.createNetwork(t, netName, "--opt", "mtu=1400")
	p.removeLater(t, srv)
	const port = 18084
	srvID := p.ok(t, "run", "-d", "--name", srv, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), podmanImage,
		"sh", "-c", "echo served-by-"+srv+" > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
	if b, err := os.ReadFile(filepath.Join(p.stateRoot, srvID, "console.log")); err != nil || bytes.Contains(b, []byte("Linux version")) {
		t.Errorf("the server booted instead of restoring a template (%v); console:\n%s", err, b)
	}
	want := "served-by-" + srv + "\n"
	waitServed(t, port, want)
	r = p.run(t, nil, "run", "--rm", "--network", netName, podmanImage, "sh", "-c",
		"wget -q -O- http://"+srv+"/index.html && cat /sys/class/net/eth0/mtu")
	if r.code != 0 || string(r.stdout) != want+"1400\n" {
		t.Errorf("wget http://%s/ from another clone: exit %d, stdout %q, stderr %q", srv, r.code, r.stdout, r.stderr)
	}
}

// templatesConfig is the run's config with VM templates on (9p shares).
func templatesConfig(t testing.TB) string {
	return writeConfig(t, func(c *runtime.Config) { c.ShareFS = "9p"; c.Templates = true })
}

// TestTemplatesVirtiofs runs clones whose shares are virtiofs (the rootfs
// and a volume): the template has an empty PCIe port for each, and each
// clone's own, served by its own virtiofsd, is hot-added after its
// restore. Reads and writes reach the host both ways, under the CLI and
// podman, and nothing is left behind.
func TestTemplatesVirtiofs(t *testing.T) {
	needVMs(t)
	cfg := writeConfig(t, func(c *runtime.Config) { c.ShareFS = "virtiofs"; c.Templates = true })
	if err := os.RemoveAll(filepath.Join(env.cfg.DataDir, "templates")); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in"), []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(id, wantOrigin string) {
		t.Helper()
		s := runWithVolume(t, cfg, id, "cat /vol/in; echo from-the-clone > /written; exit 5", vol, 5, "from-the-host\n", wantOrigin)
		if b, err := os.ReadFile(filepath.Join(s.Root.Path, "written")); err != nil || string(b) != "from-the-clone\n" {
			t.Errorf("%s: the container's write in its rootfs: %q, %v", id, b, err)
		}
	}
	run("tplv-1", "restored from a template booted and saved by this start")
	run("tplv-2", "restored from a template; its guest")

	p := newPodmanWithConfig(t, cfg)
	r := p.run(t, nil, "run", "--rm", "--network", "none", "-v", vol+":/vol", podmanImage, "sh", "-c", "cat /vol/in; exit 3")
	if r.code != 3 || string(r.stdout) != "from-the-host\n" {
		t.Errorf("podman run: exit %d, %q; stderr %s", r.code, r.stdout, r.stderr)
	}
	id := p.detached(t, "tplv-podman", "sleep", "3600")
	if b, err := os.ReadFile(filepath.Join(p.stateRoot, id, "console.log")); err != nil || bytes.Contains(b, []byte("Linux version")) {
		t.Errorf("podman's container booted instead of restoring a template (%v); console:\n%s", err, b)
	}
	if out := p.ok(t, "exec", "tplv-podman", "sh", "-c", "echo exec-ok > /f; cat /f"); out != "exec-ok" {
		t.Errorf("podman exec: %q", out)
	}
	if out := p.ok(t, "diff", "tplv-podman"); !strings.Contains(out, "A /f") {
		t.Errorf("podman diff does not show the clone's write:\n%s", out)
	}
	p.ok(t, "stop", "-t", "1", "tplv-podman")
}

// TestTemplatesDisk runs clones whose root is a disk image (config rootfs
// "disk"): the template's disk is an empty placeholder, each clone's is
// its container's image, which its guest sees grow after the restore. A
// 9p volume rides along.
func TestTemplatesDisk(t *testing.T) {
	needVMs(t)
	cfg := writeConfig(t, func(c *runtime.Config) { c.Rootfs = runtime.RootfsDisk; c.ShareFS = "9p"; c.Templates = true })
	if err := os.RemoveAll(filepath.Join(env.cfg.DataDir, "templates")); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	for i, origin := range []string{"restored from a template booted and saved by this start", "restored from a template; its guest"} {
		runWithVolume(t, cfg, fmt.Sprintf("tpld-%d", i), "grep -c root /etc/passwd; echo in-the-image > /f; cat /f; "+
			"grep -c ' / btrfs ' /proc/mounts; exit 4", vol, 4, "1\nin-the-image\n1\n", origin)
	}
}

// runWithVolume runs script as container id under config cfg with vol at
// /vol, where the script's id is written last; it checks the exit code,
// stdout and what run --timings says of the VM's origin (and no warning),
// that nothing is left, and logs the timings. It returns the spec.
func runWithVolume(t *testing.T, cfg, id, script, vol string, wantCode int, wantStdout, wantOrigin string) *specs.Spec {
	t.Helper()
	s := busyboxSpec(t, "sh", "-c", "echo "+id+" > /vol/out; "+script)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	r := runtimeCmdWith(t, cfg, nil, "run", "--timings", "--bundle", writeBundle(t, s), id)
	if r.code != wantCode || string(r.stdout) != wantStdout {
		t.Fatalf("%s: exit %d, stdout %q, want %d and %q; stderr:\n%s", id, r.code, r.stdout, wantCode, wantStdout, r.stderr)
	}
	if !strings.Contains(string(r.stderr), wantOrigin) || strings.Contains(string(r.stderr), "warning") {
		t.Fatalf("%s: stderr does not say %q (or warns):\n%s", id, wantOrigin, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != id+"\n" {
		t.Errorf("%s: the container's write in its volume: %q, %v", id, b, err)
	}
	assertNothingLeft(t, id)
	t.Logf("%s: %s", id, bytes.TrimSpace(r.stderr))
	return s
}
