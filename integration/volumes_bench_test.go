package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// Sizes of BenchmarkVolume's operations: modest, as the guest may be
// TCG-emulated.
const (
	benchWriteMiB = 64
	benchReadMiB  = 64
	benchFiles    = 1000
)

// volumeBenchScript is what BenchmarkVolume times, in busybox sh, on
// directory dir: a sequential write with fsync, a sequential read of a file
// the host wrote (never in the guest's page cache; in the host's), and the
// creation of small files. Each step ends with a mark: the name, then the
// monotonic clock in nanoseconds (/proc/timer_list's "now at": the wall
// clock of this host is stepped, minutes at a time); a mark right after
// the first measures what a mark itself costs. The last line names dir's
// filesystem type. A container running it needs /proc/timer_list unmasked
// (withClock).
func volumeBenchScript(dir string) string {
	return fmt.Sprintf(`set -e
D=%s
mkdir "$D/c"
mark() { echo "mark $1"; grep -m1 "^now at" /proc/timer_list; }
mark start
mark calibrate
dd if=/dev/zero of="$D/w" bs=1M count=%d conv=fsync
mark write
dd if="$D/r" of=/dev/null bs=1M
mark read
i=0; while [ $i -lt %d ]; do : > "$D/c/f$i"; i=$((i+1)); done
mark create
awk -v d="$D" '$2==d{print "fstype", $3}' /proc/mounts
`, shellQuote(dir), benchWriteMiB, benchFiles)
}

// volumeBenchResult is what one run of volumeBenchScript measured.
type volumeBenchResult struct {
	write, read, create time.Duration
	fstype              string
}

// parseMarks reads the clock readings after each mark of a script's
// output (`mark NAME` then /proc/timer_list's `now at NS nsecs`), and its
// `fstype T` line; every one of want must be there.
func parseMarks(out []byte, want ...string) (marks map[string]time.Duration, fstype string, err error) {
	marks = map[string]time.Duration{}
	var mark string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "mark":
			mark = f[1]
		case len(f) == 2 && f[0] == "fstype":
			fstype = f[1]
		case len(f) == 4 && f[0] == "now" && f[1] == "at" && mark != "":
			ns, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				return nil, "", fmt.Errorf("the clock reading after mark %q: %w", mark, err)
			}
			marks[mark] = time.Duration(ns)
			mark = ""
		}
	}
	for _, m := range want {
		if _, ok := marks[m]; !ok {
			return nil, "", fmt.Errorf("no clock reading after mark %q in the output:\n%s", m, out)
		}
	}
	return marks, fstype, nil
}

// parseVolumeBench reads volumeBenchScript's output.
func parseVolumeBench(out []byte) (volumeBenchResult, error) {
	var r volumeBenchResult
	marks, fstype, err := parseMarks(out, "start", "calibrate", "write", "read", "create")
	if err != nil {
		return r, err
	}
	r.fstype = fstype
	overhead := marks["calibrate"] - marks["start"]
	r.write = marks["write"] - marks["calibrate"] - overhead
	r.read = marks["read"] - marks["write"] - overhead
	r.create = marks["create"] - marks["read"] - overhead
	if r.write <= 0 || r.read <= 0 || r.create <= 0 {
		return r, fmt.Errorf("%w: a step took no time (write %s, read %s, create %s, mark %s): clock readings %v", errClockStepped, r.write, r.read, r.create, overhead, marks)
	}
	return r, nil
}

// keepLast is rows with r in place of an earlier row of the same key: a
// sub-benchmark runs again with the b.N asked for, and its last run is the
// one its table keeps.
func keepLast[R any, K comparable](rows []R, r R, key func(R) K) []R {
	rows = slices.DeleteFunc(rows, func(o R) bool { return key(o) == key(r) })
	return append(rows, r)
}

// rowOf is the row of rows whose key is k, or nil.
func rowOf[R any, K comparable](rows []R, k K, key func(R) K) *R {
	for i := range rows {
		if key(rows[i]) == k {
			return &rows[i]
		}
	}
	return nil
}

// errClockStepped: the script's clock readings cannot be true (a step
// took no time, or longer than the whole run); the run is repeated, at
// most clockRetries times. (The wall clock, which the script read before,
// is stepped on this host, minutes at a time: it reads the monotonic one.)
var errClockStepped = errors.New("the clock was stepped during the run")

// clockRetries bounds the repeats of a run whose clock was stepped.
const clockRetries = 2

// checkSteps is parseVolumeBench of out, checked against the wall time
// the whole run took (by the host's monotonic clock).
func checkSteps(out []byte, wall time.Duration) (volumeBenchResult, error) {
	res, err := parseVolumeBench(out)
	if err != nil {
		return res, err
	}
	if steps := res.write + res.read + res.create; steps > wall {
		return res, fmt.Errorf("%w: the steps took %s by the clock of the script, more than the %s the whole run took", errClockStepped, steps, wall)
	}
	return res, nil
}

// BenchmarkVolume measures sequential write and read throughput and the
// file-create rate on a host directory: directly on the host (busybox sh,
// the same script), and bind-mounted into a VM (`initos-runtime run` of
// the busybox bundle) over virtiofs and over 9p; it prints a table of the
// three at the end.
func BenchmarkVolume(b *testing.B) {
	needVMs(b)
	type row struct {
		name                 string
		write, read, creates float64 // MB/s, MB/s, files/s
	}
	var rows []row
	for _, target := range []string{"host", vmm.ShareVirtiofs, vmm.Share9p} {
		b.Run(target, func(b *testing.B) {
			dir := b.TempDir()
			var config, bundle string
			if target != "host" {
				needShareFS(b, target)
				config = writeConfig(b, func(c *runtime.Config) { c.ShareFS = target })
				s := busyboxSpec(b, "sh", "-c", volumeBenchScript("/vol"))
				withClock(s)
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: dir, Options: []string{"rbind", "rw"}})
				bundle = writeBundle(b, s)
			}
			var sum volumeBenchResult
			retries := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for _, p := range []string{"w", "c"} {
					if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
						b.Fatal(err)
					}
				}
				if err := os.WriteFile(filepath.Join(dir, "r"), make([]byte, benchReadMiB<<20), 0o644); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				var out, stderr []byte
				if target == "host" {
					out, stderr = hostVolumeBench(b, dir)
				} else {
					id := fmt.Sprintf("bench-vol-%s-%d", target, i)
					r := runtimeCmdWith(b, config, nil, "run", "--bundle", bundle, id)
					assertNothingLeft(b, id)
					if r.code != 0 {
						b.Fatalf("initos-runtime run of the volume benchmark on %s: exit %d; stdout:\n%s\nstderr:\n%s", target, r.code, r.stdout, r.stderr)
					}
					out, stderr = r.stdout, r.stderr
				}
				res, err := checkSteps(out, time.Since(t0))
				if errors.Is(err, errClockStepped) && retries < clockRetries {
					retries++
					b.Logf("%s: run %d again: %v", target, i, err)
					i--
					continue
				}
				if err != nil {
					b.Fatalf("%s: %v\nstderr:\n%s", target, err, stderr)
				}
				if target != "host" && res.fstype != target {
					b.Fatalf("the guest mounted the volume as %q, want %q", res.fstype, target)
				}
				sum.write += res.write
				sum.read += res.read
				sum.create += res.create
			}
			r := row{
				name:    target,
				write:   float64(b.N*benchWriteMiB<<20) / 1e6 / sum.write.Seconds(),
				read:    float64(b.N*benchReadMiB<<20) / 1e6 / sum.read.Seconds(),
				creates: float64(b.N*benchFiles) / sum.create.Seconds(),
			}
			b.ReportMetric(r.write, "write-MB/s")
			b.ReportMetric(r.read, "read-MB/s")
			b.ReportMetric(r.creates, "creates/s")
			// The last run of a sub-benchmark (b.N as asked) is the one kept.
			rows = keepLast(rows, r, func(r row) string { return r.name })
		})
	}
	host := rowOf(rows, "host", func(r row) string { return r.name })
	var tab strings.Builder
	fmt.Fprintf(&tab, "volume: %d MiB write (fsync), %d MiB read (host-written), %d file creates\n", benchWriteMiB, benchReadMiB, benchFiles)
	fmt.Fprintf(&tab, "%-9s %12s %12s %12s\n", "target", "write MB/s", "read MB/s", "creates/s")
	for _, r := range rows {
		fmt.Fprintf(&tab, "%-9s %12.1f %12.1f %12.0f", r.name, r.write, r.read, r.creates)
		if host != nil && r.name != "host" {
			fmt.Fprintf(&tab, "   (%.1f%% / %.1f%% / %.1f%% of host)", 100*r.write/host.write, 100*r.read/host.read, 100*r.creates/host.creates)
		}
		tab.WriteString("\n")
	}
	// Straight to the output: a benchmark's own log shows only with -v.
	fmt.Print(tab.String())
}

// hostVolumeBench runs volumeBenchScript on dir on the host with the
// busybox of the bundle (the guest's tools).
func hostVolumeBench(b *testing.B, dir string) (stdout, stderr []byte) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
	defer cancel()
	bin := filepath.Join(env.busybox, "rootfs", "bin")
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "busybox"), "sh", "-c", volumeBenchScript(dir))
	cmd.Env = []string{"PATH=" + bin}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("the volume benchmark on the host: %v; stdout:\n%s\nstderr:\n%s", err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes(), errb.Bytes()
}

// withClock unmasks /proc/timer_list, whose "now at" line is the bench
// script's clock (runc's default spec masks it).
func withClock(s *specs.Spec) {
	if s.Linux != nil {
		s.Linux.MaskedPaths = slices.DeleteFunc(s.Linux.MaskedPaths, func(p string) bool { return p == "/proc/timer_list" })
	}
}

// TestCheckSteps: the script's marks give each step's time less the mark's
// own; a clock that went back, or steps longer than the whole run, are
// errClockStepped (the benchmarks run such a run again).
func TestCheckSteps(t *testing.T) {
	out := func(secs ...int64) []byte {
		var b bytes.Buffer
		for i, m := range []string{"start", "calibrate", "write", "read", "create"} {
			fmt.Fprintf(&b, "mark %s\nnow at %d nsecs\n", m, secs[i]*1e9)
		}
		b.WriteString("fstype 9p\n")
		return b.Bytes()
	}
	res, err := checkSteps(out(100, 101, 103, 106, 110), time.Minute)
	if err != nil || res.write != time.Second || res.read != 2*time.Second || res.create != 3*time.Second || res.fstype != "9p" {
		t.Errorf("checkSteps = %+v, %v; want write 1s, read 2s, create 3s on 9p", res, err)
	}
	if _, err := checkSteps(out(100, 101, 103, 106, 50), time.Minute); !errors.Is(err, errClockStepped) {
		t.Errorf("a clock stepped back: %v, want errClockStepped", err)
	}
	if _, err := checkSteps(out(100, 101, 103, 106, 410), time.Minute); !errors.Is(err, errClockStepped) {
		t.Errorf("steps longer than the run: %v, want errClockStepped", err)
	}
	if _, err := checkSteps([]byte("mark start\n"), time.Minute); err == nil || errors.Is(err, errClockStepped) {
		t.Errorf("output without readings: %v, want another error", err)
	}
}
