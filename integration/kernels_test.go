package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/initos-runtime/initos-runtime/initrd"
	"github.com/initos-runtime/initos-runtime/runtime"
)

// debCache keeps the packages tests download between runs.
const debCache = "/var/cache/initos-runtime/debs"

// TestKernels runs a kernel store of the test's own with two of Debian 12's
// kernel ABIs: the run's kernel added as an unpacked directory, and an
// older ABI's package unpacked with its modules compressed (.ko.zst, some
// .ko.xz, as Debian 13 and Fedora ship them). Containers pinned by the
// annotation, under the CLI and podman, boot the kernel they name; the
// default decides for the others; a kernel a running container booted
// cannot be removed, and once it has ended it can.
func TestKernels(t *testing.T) {
	needVMs(t)
	requirePrograms(t, deb("dpkg", "dpkg-deb"), deb("apt", "apt-get"), deb("apt", "apt-cache"), deb("zstd", "zstd"), deb("xz-utils", "xz"))
	t.Parallel()
	current, err := initrd.FindKernel(env.cfg.KernelRoot)
	if err != nil {
		t.Fatal(err)
	}
	older := olderKernelDeb(t, current.Release)
	store := filepath.Join(t.TempDir(), "kernels")
	cfg := writeConfig(t, func(c *runtime.Config) { c.KernelRoot = store })
	kernel := func(wantCode int, args ...string) string {
		t.Helper()
		r := runtimeCmdWith(t, cfg, nil, append([]string{"kernel"}, args...)...)
		if r.code != wantCode {
			t.Fatalf("kernel %s: exit %d, want %d; stdout %q; stderr %q", strings.Join(args, " "), r.code, wantCode, r.stdout, r.stderr)
		}
		return string(r.stdout) + string(r.stderr)
	}

	// The older ABI: unpacked, its modules compressed, added as a tree.
	tree := filepath.Join(t.TempDir(), "tree")
	if out, err := exec.Command("dpkg-deb", "-x", older.deb, tree).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v: %s", older.deb, err, out)
	}
	compressModules(t, filepath.Join(tree, "lib/modules", older.release))
	kernel(0, "add", env.cfg.KernelRoot)
	kernel(0, "add", tree)
	if out := kernel(1, "add", tree); !strings.Contains(out, "already added") {
		t.Errorf("adding %s twice: %q", older.release, out)
	}
	if out := kernel(0, "list"); !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(current.Release)+`\s+\*\s+no\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(older.release)+`\s+no\s`).MatchString(out) {
		t.Errorf("kernel list: the highest release is the default:\n%s", out)
	}

	uname := func(id string, annotations map[string]string) string {
		t.Helper()
		s := busyboxSpec(t, "uname", "-r")
		s.Annotations = annotations
		r := runtimeCmdWith(t, cfg, nil, "run", "--bundle", writeBundle(t, s), id)
		if r.code != 0 {
			t.Fatalf("%s: exit %d; stderr:\n%s", id, r.code, r.stderr)
		}
		assertNothingLeft(t, id)
		return strings.TrimSpace(string(r.stdout))
	}
	pin := map[string]string{runtime.KernelAnnotation: older.release}
	if got := uname("kern-default", nil); got != current.Release {
		t.Errorf("without the annotation: uname -r %q, want the default %q", got, current.Release)
	}
	if got := uname("kern-pinned", pin); got != older.release {
		t.Errorf("pinned to %s: uname -r %q", older.release, got)
	}
	s := busyboxSpec(t, "true")
	s.Annotations = map[string]string{runtime.KernelAnnotation: "5.10.0-99-amd64"}
	if r := runtimeCmdWith(t, cfg, nil, "run", "--bundle", writeBundle(t, s), "kern-missing"); r.code == 0 ||
		!strings.Contains(string(r.stderr), `kernel "5.10.0-99-amd64": kernel not added`) {
		t.Errorf("a kernel that is not added: exit %d, stderr %q", r.code, r.stderr)
	}
	assertNothingLeft(t, "kern-missing")

	// podman: the annotation reaches the runtime; a running container
	// holds its kernel.
	p := newPodmanWithConfig(t, cfg)
	if out := p.ok(t, "run", "--rm", "--network", "none", "--annotation", runtime.KernelAnnotation+"="+older.release, podmanImage, "uname", "-r"); out != older.release {
		t.Errorf("podman run pinned to %s: uname -r %q", older.release, out)
	}
	p.removeLater(t, "kern-held")
	p.ok(t, "run", "-d", "--name", "kern-held", "--network", "none", "--annotation", runtime.KernelAnnotation+"="+older.release, podmanImage, "sleep", "3600")
	if out := kernel(1, "rm", older.release); !strings.Contains(out, "in use") {
		t.Errorf("kernel rm of a kernel in use: %q", out)
	}
	if out := kernel(0, "list"); !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(older.release) + `\s+yes\s`).MatchString(out) {
		t.Errorf("kernel list does not show %s in use:\n%s", older.release, out)
	}
	p.ok(t, "rm", "-f", "-t", "0", "kern-held")

	// The default decides for containers without the annotation.
	kernel(0, "default", older.release)
	if got := uname("kern-new-default", nil); got != older.release {
		t.Errorf("after kernel default %s: uname -r %q", older.release, got)
	}
	if out := kernel(1, "rm", older.release); !strings.Contains(out, "is the default") {
		t.Errorf("kernel rm of the default: %q", out)
	}
	kernel(0, "default", current.Release)
	// What the cache made for the removed kernel goes with it: its
	// vmlinux, initrd, module index and alias table.
	cached := func() []string {
		m, err := filepath.Glob(filepath.Join(env.cfg.CacheDir(), "*-"+older.release+"-*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if before := cached(); len(before) < 4 {
		t.Errorf("the cache's files of %s before its rm: %q, want its vmlinux, initrd, module index and alias table", older.release, before)
	}
	kernel(0, "rm", older.release)
	if left := cached(); len(left) != 0 {
		t.Errorf("the cache's files of %s after its rm: %q", older.release, left)
	}
	if out := kernel(0, "list", "-q"); strings.TrimSpace(out) != current.Release {
		t.Errorf("kernel list after rm: %q", out)
	}
	if out := kernel(1, "rm", current.Release); !strings.Contains(out, "only one") {
		t.Errorf("kernel rm of the last kernel: %q", out)
	}
}

type kernelDeb struct{ release, deb string }

// olderKernelDeb downloads (once, into debCache) the package of the
// highest Debian kernel ABI below current that the archive serves.
func olderKernelDeb(t *testing.T, current string) kernelDeb {
	t.Helper()
	out, err := exec.Command("apt-cache", "search", "--names-only", `^linux-image-[0-9.]+-[0-9]+-amd64$`).Output()
	if err != nil {
		t.Fatalf("apt-cache search: %v", err)
	}
	var best string
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		rel := strings.TrimPrefix(name, "linux-image-")
		if rel == name || initrd.CompareVersions(rel, current) >= 0 || !strings.HasPrefix(rel, strings.SplitN(current, "-", 2)[0]) {
			continue
		}
		if best == "" || initrd.CompareVersions(rel, best) > 0 {
			best = rel
		}
	}
	if best == "" {
		t.Fatalf("the archive serves no kernel ABI below %s (apt-cache search):\n%s", current, out)
	}
	pkg := "linux-image-" + best
	if debs, _ := filepath.Glob(filepath.Join(debCache, pkg+"_*.deb")); len(debs) > 0 {
		return kernelDeb{best, debs[0]}
	}
	if err := os.MkdirAll(debCache, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("apt-get", "download", "-q", pkg)
	cmd.Dir = debCache
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download %s: %v: %s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(debCache, pkg+"_*.deb"))
	if len(debs) == 0 {
		t.Fatalf("apt-get download %s left no package in %s", pkg, debCache)
	}
	return kernelDeb{best, debs[0]}
}

// compressModules compresses every module under dir as a distribution
// does: zstd, and xz for the virtio drivers.
func compressModules(t *testing.T, dir string) {
	t.Helper()
	var zst, xz []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return err
		}
		if strings.Contains(p, "/drivers/virtio/") {
			xz = append(xz, p)
		} else {
			zst = append(zst, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(zst) == 0 || len(xz) == 0 {
		t.Fatalf("modules under %s: %d for zstd, %d for xz", dir, len(zst), len(xz))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	run := func(args []string, files []string) {
		defer wg.Done()
		for len(files) > 0 {
			n := min(len(files), 500)
			var stderr bytes.Buffer
			cmd := exec.Command(args[0], append(args[1:], files[:n]...)...)
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				errs <- fmt.Errorf("%s: %v: %s", args[0], err, stderr.String())
				return
			}
			files = files[n:]
		}
	}
	wg.Add(2)
	go run([]string{"zstd", "-q", "-1", "--rm"}, zst)
	go run([]string{"xz", "-1", "--check=crc32"}, xz)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "kernel/drivers/virtio/*.ko")); len(left) > 0 {
		t.Fatalf("uncompressed modules left: %v", left)
	}
}
