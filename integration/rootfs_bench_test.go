package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Sizes of BenchmarkRootfs's operations (docs/rootfs-writes.md's): a
// 256 MiB write with fsync, a 256 MiB read of a file the host wrote, and
// volumeBenchScript's benchFiles (1000) file creates.
const (
	rootfsBenchWriteMiB = 256
	rootfsBenchReadMiB  = 256
	// rootfsBenchDir is where in the container's root the script runs.
	rootfsBenchDir = "/bench"
)

// rootfsBenchScript is volumeBenchScript on directory dir with
// rootfsBenchWriteMiB written instead of benchWriteMiB (the read size is
// that of the file the host puts there), ending with the filesystem type
// of the container's root: dir is no mount point of its own.
func rootfsBenchScript(b testing.TB, dir string) string {
	b.Helper()
	s := volumeBenchScript(dir)
	old := fmt.Sprintf(" count=%d conv=fsync", benchWriteMiB)
	if strings.Count(s, old) != 1 {
		b.Fatalf("volumeBenchScript no longer writes with %q once: rootfsBenchScript cannot resize its write:\n%s", old, s)
	}
	s = strings.Replace(s, old, fmt.Sprintf(" count=%d conv=fsync", rootfsBenchWriteMiB), 1)
	// parseVolumeBench keeps the last fstype line; the root may be listed
	// more than once (the last is the one on top).
	return s + `awk '$2=="/"{t=$3} END{print "fstype", t}' /proc/mounts` + "\n"
}

// rootfsBenchTarget is one way BenchmarkRootfs runs the script.
type rootfsBenchTarget struct {
	name   string
	fstype string // what the container's root must be; "" any (runc: the host's)
	config func(b *testing.B) string
}

// rootfsBenchTargets are runc, initos-runtime's root share over virtiofs
// (the run's config: shareFS auto) and over 9p, and its btrfs disk (with
// room for the write beside the host-written file).
var rootfsBenchTargets = []rootfsBenchTarget{
	{name: "runc"},
	{name: "share-virtiofs", fstype: vmm.ShareVirtiofs, config: func(b *testing.B) string {
		needShareFS(b, vmm.ShareVirtiofs)
		return env.config
	}},
	{name: "share-9p", fstype: vmm.Share9p, config: func(b *testing.B) string {
		return writeConfig(b, func(c *runtime.Config) { c.ShareFS = vmm.Share9p })
	}},
	{name: "disk", fstype: "btrfs", config: func(b *testing.B) string {
		return writeConfig(b, func(c *runtime.Config) {
			c.Rootfs = runtime.RootfsDisk
			c.FreeSpace = (rootfsBenchWriteMiB + 256) << 20
		})
	}},
}

// BenchmarkRootfs measures sequential write and read throughput and the
// file-create rate in a directory of the container's root filesystem (a
// copy of the busybox rootfs per target): under runc, in initos-runtime's
// root share over virtiofs and over 9p, and on its btrfs disk. It prints a
// table of the four at the end, each relative to runc.
func BenchmarkRootfs(b *testing.B) {
	needVMs(b)
	type row struct {
		name, fstype         string
		write, read, creates float64       // MB/s, MB/s, files/s
		ready                time.Duration // disk= of run --timings; 0: runc
	}
	var rows []row
	for _, target := range rootfsBenchTargets {
		b.Run(target.name, func(b *testing.B) {
			var runcPath, config string
			if target.config == nil {
				runcPath = requireProgram(b, "runc", "runc", "/usr/sbin/runc", "runc")
			} else {
				config = target.config(b)
			}
			s := busyboxSpec(b, "sh", "-c", rootfsBenchScript(b, rootfsBenchDir))
			withEngineCaps(s)
			withClock(s)
			bundle := writeBundle(b, s)
			dir := filepath.Join(s.Root.Path, rootfsBenchDir)
			var sum volumeBenchResult
			var ready time.Duration
			fstype := ""
			retries := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// A fresh directory (share: the last run's writes are in
				// the rootfs) and a file of the host's to read.
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				if err := writeRandomFile(filepath.Join(dir, "r"), rootfsBenchReadMiB<<20, uint64(i)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				id := fmt.Sprintf("bench-rootfs-%s-%d", target.name, i)
				var out, stderr []byte
				if target.config == nil {
					out, stderr = runcRun(b, runcPath, bundle, id)
				} else {
					r := runtimeCmdWith(b, config, nil, "run", "--timings", "--bundle", bundle, id)
					assertNothingLeft(b, id)
					if r.code != 0 {
						b.Fatalf("initos-runtime run of the rootfs benchmark (%s): exit %d; stdout:\n%s\nstderr:\n%s", target.name, r.code, r.stdout, r.stderr)
					}
					out, stderr = r.stdout, r.stderr
				}
				res, err := checkSteps(out, time.Since(t0))
				if errors.Is(err, errClockStepped) && retries < clockRetries {
					retries++
					b.Logf("%s: run %d again: %v", target.name, i, err)
					i--
					continue
				}
				if err != nil {
					b.Fatalf("%s: %v\nstderr:\n%s", target.name, err, stderr)
				}
				if target.fstype != "" && res.fstype != target.fstype {
					b.Fatalf("%s: the container's root is %q, want %q", target.name, res.fstype, target.fstype)
				}
				if target.config != nil {
					d, err := runTiming(stderr, "disk")
					if err != nil {
						b.Fatal(err)
					}
					ready += d
				}
				fstype = res.fstype
				sum.write += res.write
				sum.read += res.read
				sum.create += res.create
			}
			r := row{
				name:    target.name,
				fstype:  fstype,
				write:   float64(b.N*rootfsBenchWriteMiB<<20) / 1e6 / sum.write.Seconds(),
				read:    float64(b.N*rootfsBenchReadMiB<<20) / 1e6 / sum.read.Seconds(),
				creates: float64(b.N*benchFiles) / sum.create.Seconds(),
				ready:   ready / time.Duration(b.N),
			}
			b.ReportMetric(r.write, "write-MB/s")
			b.ReportMetric(r.read, "read-MB/s")
			b.ReportMetric(r.creates, "creates/s")
			rows = keepLast(rows, r, func(r row) string { return r.name })
		})
	}
	runc := rowOf(rows, "runc", func(r row) string { return r.name })
	var tab strings.Builder
	fmt.Fprintf(&tab, "rootfs: %d MiB write (fsync), %d MiB read (host-written), %d file creates in %s of the container's root; ready: disk= of run --timings\n",
		rootfsBenchWriteMiB, rootfsBenchReadMiB, benchFiles, rootfsBenchDir)
	fmt.Fprintf(&tab, "%-15s %-9s %11s %11s %10s %10s\n", "target", "fstype", "write MB/s", "read MB/s", "creates/s", "ready")
	for _, r := range rows {
		ready := "-"
		if r.name != "runc" {
			ready = r.ready.Round(10 * time.Microsecond).String()
		}
		fmt.Fprintf(&tab, "%-15s %-9s %11.1f %11.1f %10.0f %10s", r.name, r.fstype, r.write, r.read, r.creates, ready)
		if runc != nil && r.name != "runc" {
			fmt.Fprintf(&tab, "   (%.1f%% / %.1f%% / %.1f%% of runc)", 100*r.write/runc.write, 100*r.read/runc.read, 100*r.creates/runc.creates)
		}
		tab.WriteString("\n")
	}
	// Straight to the output: a benchmark's own log shows only with -v.
	fmt.Print(tab.String())
}

// rootfsExecs is how many times rootfsWorkloadScript runs a program.
const rootfsExecs = 40

// rootfsWorkloadScript times, by the guest's clock (withClock), what a
// shell script and a build step do most in the container's root: a
// program run again and again from a shell (busybox's true, whose binary
// the shell itself runs), and a pass over the metadata of the image's
// directories (ls -lR: a stat of each entry, the links read).
func rootfsWorkloadScript() string {
	return fmt.Sprintf(`set -e
mark() { echo "mark $1"; grep -m1 "^now at" /proc/timer_list; }
mark start
mark calibrate
i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done
mark exec
ls -lR /bin /etc /lib /usr /var >/dev/null 2>&1 || true
mark stat
awk '$2=="/"{t=$3} END{print "fstype", t}' /proc/mounts
`, rootfsExecs)
}

// BenchmarkRootfsWorkload times rootfsWorkloadScript's execs and metadata
// pass in the container's root, under runc and in each of initos-runtime's
// roots (rootfsBenchTargets), and prints a table of them beside runc's.
func BenchmarkRootfsWorkload(b *testing.B) {
	needVMs(b)
	type row struct {
		name, fstype string
		exec, stat   time.Duration // one exec; the whole pass
	}
	var rows []row
	for _, target := range rootfsBenchTargets {
		b.Run(target.name, func(b *testing.B) {
			var runcPath, config string
			if target.config == nil {
				runcPath = requireProgram(b, "runc", "runc", "/usr/sbin/runc", "runc")
			} else {
				config = target.config(b)
			}
			s := busyboxSpec(b, "sh", "-c", rootfsWorkloadScript())
			withEngineCaps(s)
			withClock(s)
			bundle := writeBundle(b, s)
			var r row
			retries := 0
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				id := fmt.Sprintf("bench-workload-%s-%d", target.name, i)
				var out, stderr []byte
				if target.config == nil {
					out, stderr = runcRun(b, runcPath, bundle, id)
				} else {
					res := runtimeCmdWith(b, config, nil, "run", "--bundle", bundle, id)
					assertNothingLeft(b, id)
					if res.code != 0 {
						b.Fatalf("initos-runtime run of the workload benchmark (%s): exit %d; stdout:\n%s\nstderr:\n%s", target.name, res.code, res.stdout, res.stderr)
					}
					out, stderr = res.stdout, res.stderr
				}
				marks, fstype, err := parseMarks(out, "start", "calibrate", "exec", "stat")
				if err != nil {
					b.Fatalf("%s: %v\nstderr:\n%s", target.name, err, stderr)
				}
				mark := marks["calibrate"] - marks["start"]
				exec, stat := marks["exec"]-marks["calibrate"]-mark, marks["stat"]-marks["exec"]-mark
				if exec <= 0 || stat <= 0 || exec+stat > time.Since(t0) {
					if retries < clockRetries {
						retries++
						b.Logf("%s: run %d again: %v: clock readings %v", target.name, i, errClockStepped, marks)
						i--
						continue
					}
					b.Fatalf("%s: %v: clock readings %v", target.name, errClockStepped, marks)
				}
				if target.fstype != "" && fstype != target.fstype {
					b.Fatalf("%s: the container's root is %q, want %q", target.name, fstype, target.fstype)
				}
				r.fstype = fstype
				r.exec += exec / rootfsExecs
				r.stat += stat
			}
			r.name = target.name
			r.exec /= time.Duration(b.N)
			r.stat /= time.Duration(b.N)
			b.ReportMetric(ms(r.exec), "exec-ms")
			b.ReportMetric(ms(r.stat), "ls-lR-ms")
			record("rootfs.exec."+target.name, ms(r.exec))
			record("rootfs.ls."+target.name, ms(r.stat))
			rows = keepLast(rows, r, func(r row) string { return r.name })
		})
	}
	runc := rowOf(rows, "runc", func(r row) string { return r.name })
	var tab strings.Builder
	fmt.Fprintf(&tab, "rootfs workload: %d execs of /bin/true from a shell, ls -lR of the image's directories, in the container's root (guest clock)\n", rootfsExecs)
	fmt.Fprintf(&tab, "%-15s %-9s %10s %10s\n", "target", "fstype", "exec ms", "ls -lR ms")
	for _, r := range rows {
		fmt.Fprintf(&tab, "%-15s %-9s %10.1f %10.0f", r.name, r.fstype, ms(r.exec), ms(r.stat))
		if runc != nil && r.name != "runc" && runc.exec > 0 && runc.stat > 0 {
			fmt.Fprintf(&tab, "   (%.1fx / %.1fx runc's)", float64(r.exec)/float64(runc.exec), float64(r.stat)/float64(runc.stat))
		}
		tab.WriteString("\n")
	}
	// Straight to the output: a benchmark's own log shows only with -v.
	fmt.Print(tab.String())
}

// runcRun runs bundle as container id under runc (a state root of b's)
// and returns its output; a failure fails b.
func runcRun(b *testing.B, runcPath, bundle, id string) (stdout, stderr []byte) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, runcPath, "--root", b.TempDir(), "run", "--bundle", bundle, id)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("runc run of %s: %v; stdout:\n%s\nstderr:\n%s", bundle, err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes(), errb.Bytes()
}

// runTiming is phase's duration in the line `initos-runtime run --timings`
// writes to stderr.
func runTiming(stderr []byte, phase string) (time.Duration, error) {
	for _, m := range timingsRe.FindAllStringSubmatch(string(stderr), -1) {
		if m[1] != phase {
			continue
		}
		d, err := time.ParseDuration(strings.Replace(m[2], "µ", "u", 1))
		if err != nil {
			return 0, fmt.Errorf("run --timings: %s=%s: %v", phase, m[2], err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("run --timings printed no %s= in its stderr:\n%s", phase, stderr)
}

// writeRandomFile writes size pseudo-random (incompressible) bytes, from
// seed, to a new file path.
func writeRandomFile(path string, size int64, seed uint64) error {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(f, io.LimitReader(rand.NewChaCha8(key), size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// The large image of BenchmarkRootfsReady: busybox plus this many files of
// this size under /data (300 MB in all).
const (
	readyBigFiles    = 300
	readyBigFileSize = 1_000_000
)

// BenchmarkRootfsReady measures the time initos-runtime takes to make the
// rootfs ready (disk= of run --timings: a bind in share mode, the btrfs
// build in disk mode) for a second container of the same image, for the
// busybox rootfs and for busybox plus 300 MB in 300 files (made once per
// benchmark run, used by every container), in share mode and in disk mode.
// Each sub-benchmark runs a first container of its image outside the
// timer, then b.N more. It prints a table at the end: share mode's time
// does not grow with the image, disk mode's does.
func BenchmarkRootfsReady(b *testing.B) {
	needVMs(b)
	small := busyboxSpec(b, "true")
	big := busyboxSpec(b, "true")
	for i := 0; i < readyBigFiles; i++ {
		d := filepath.Join(big.Root.Path, "data", fmt.Sprintf("d%02d", i%20))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := writeRandomFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), readyBigFileSize, uint64(1000+i)); err != nil {
			b.Fatal(err)
		}
	}
	images := []struct {
		name   string
		spec   *specs.Spec
		bundle string
		bytes  int64
		files  int
	}{{name: "busybox", spec: small}, {name: "busybox+300MB", spec: big}}
	for i := range images {
		images[i].bundle = writeBundle(b, images[i].spec)
		var err error
		if images[i].bytes, images[i].files, err = treeSize(images[i].spec.Root.Path); err != nil {
			b.Fatal(err)
		}
	}
	diskConfig := writeConfig(b, func(c *runtime.Config) { c.Rootfs = runtime.RootfsDisk })
	type row struct {
		mode, image   string
		bytes         int64
		files         int
		first, second time.Duration
	}
	var rows []row
	for _, mode := range []string{runtime.RootfsShare, runtime.RootfsDisk} {
		config := env.config // share: the run's own config (the default)
		if mode == runtime.RootfsDisk {
			config = diskConfig
		}
		for _, img := range images {
			name := mode + "-" + strings.TrimPrefix(img.name, "busybox+")
			b.Run(name, func(b *testing.B) {
				ready := func(id string) time.Duration {
					b.Helper()
					r := runtimeCmdWith(b, config, nil, "run", "--timings", "--bundle", img.bundle, id)
					assertNothingLeft(b, id)
					if r.code != 0 {
						b.Fatalf("initos-runtime run (%s, %s): exit %d; stdout:\n%s\nstderr:\n%s", mode, img.name, r.code, r.stdout, r.stderr)
					}
					d, err := runTiming(r.stderr, "disk")
					if err != nil {
						b.Fatal(err)
					}
					return d
				}
				b.StopTimer()
				first := ready("bench-ready-" + name + "-first")
				b.StartTimer()
				var sum time.Duration
				for i := 0; i < b.N; i++ {
					sum += ready(fmt.Sprintf("bench-ready-%s-%d", name, i))
				}
				second := sum / time.Duration(b.N)
				b.ReportMetric(float64(second)/1e6, "ready-ms")
				rows = keepLast(rows, row{mode: mode, image: img.name, bytes: img.bytes, files: img.files, first: first, second: second},
					func(r row) [2]string { return [2]string{r.mode, r.image} })
			})
		}
	}
	var tab strings.Builder
	tab.WriteString("rootfs ready (disk= of run --timings) for a first and a second container of an image; " +
		"disk mode caches images only for overlay-keyed rootfs (engine storage): these are plain directories, so every disk-mode container builds its disk\n")
	fmt.Fprintf(&tab, "%-6s %-14s %9s %7s %12s %12s\n", "mode", "image", "MB", "entries", "1st", "2nd")
	base := map[string]time.Duration{}
	for _, r := range rows {
		fmt.Fprintf(&tab, "%-6s %-14s %9.1f %7d %12s %12s", r.mode, r.image, float64(r.bytes)/1e6, r.files,
			r.first.Round(10*time.Microsecond), r.second.Round(10*time.Microsecond))
		if r.image == images[0].name {
			base[r.mode] = r.second
		} else if s, ok := base[r.mode]; ok && s > 0 {
			fmt.Fprintf(&tab, "   (%.1f× %s's)", float64(r.second)/float64(s), images[0].name)
		}
		tab.WriteString("\n")
	}
	fmt.Print(tab.String())
}

// treeSize is the bytes of regular files under dir and how many entries
// it holds.
func treeSize(dir string) (size int64, entries int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		entries++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		}
		return nil
	})
	return size, entries, err
}
