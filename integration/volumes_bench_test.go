package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
// creation of small files. Each step ends with a mark: the name, then
// adjtimex's microsecond clock; a mark right after the first measures
// what a mark itself costs. The last line names dir's filesystem type.
func volumeBenchScript(dir string) string {
	return fmt.Sprintf(`set -e
D=%s
mkdir "$D/c"
mark() { echo "mark $1"; adjtimex; }
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

// parseVolumeBench reads volumeBenchScript's output.
func parseVolumeBench(out []byte) (volumeBenchResult, error) {
	var r volumeBenchResult
	marks := map[string]time.Duration{}
	var mark string
	var sec, usec int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "mark":
			mark = f[1]
		case len(f) == 2 && f[0] == "fstype":
			r.fstype = f[1]
		case len(f) >= 2 && f[0] == "time.tv_sec:":
			sec, _ = strconv.ParseInt(f[1], 10, 64)
		case len(f) >= 2 && f[0] == "time.tv_usec:" && mark != "":
			usec, _ = strconv.ParseInt(f[1], 10, 64)
			marks[mark] = time.Duration(sec)*time.Second + time.Duration(usec)*time.Microsecond
			mark = ""
		}
	}
	for _, m := range []string{"start", "calibrate", "write", "read", "create"} {
		if _, ok := marks[m]; !ok {
			return r, fmt.Errorf("no clock reading after mark %q in the output:\n%s", m, out)
		}
	}
	overhead := marks["calibrate"] - marks["start"]
	r.write = marks["write"] - marks["calibrate"] - overhead
	r.read = marks["read"] - marks["write"] - overhead
	r.create = marks["create"] - marks["read"] - overhead
	if r.write <= 0 || r.read <= 0 || r.create <= 0 {
		return r, fmt.Errorf("a step took no time (write %s, read %s, create %s, mark %s): clock readings %v", r.write, r.read, r.create, overhead, marks)
	}
	return r, nil
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
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: dir, Options: []string{"rbind", "rw"}})
				bundle = writeBundle(b, s)
			}
			var sum volumeBenchResult
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
				wall := time.Since(t0)
				res, err := parseVolumeBench(out)
				if err != nil {
					b.Fatalf("%s: %v\nstderr:\n%s", target, err, stderr)
				}
				if target != "host" && res.fstype != target {
					b.Fatalf("the guest mounted the volume as %q, want %q", res.fstype, target)
				}
				// The guest's clock must agree with the host's.
				if steps := res.write + res.read + res.create; steps > wall {
					b.Fatalf("%s: the steps took %s by the clock of the script, more than the %s the whole run took", target, steps, wall)
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
			for i := range rows {
				if rows[i].name == target {
					rows = append(rows[:i], rows[i+1:]...)
					break
				}
			}
			rows = append(rows, r)
		})
	}
	var host *row
	for i := range rows {
		if rows[i].name == "host" {
			host = &rows[i]
		}
	}
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
