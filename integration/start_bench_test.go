package integration

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTenContainers starts ten idle busybox containers (`run -d` of
// `sleep 3600`) one at a time, then ten at once, and measures what the ten
// cost the host once idle: the drop of MemAvailable divided by ten, and the
// PSS of each container's VMM, monitor and virtiofsd.
//
// It runs three times: VMs booted, and VMs restored from a template with
// 9p shares (".tpl" figures) and with virtiofs shares (".tpl.vfs"); then
// the same with runc (".runc"), which shows what starting ten at once on
// this host's CPUs costs any runtime.
func BenchmarkTenContainers(b *testing.B) {
	needVMs(b)
	initos := func(config string) tenRuntime {
		return tenRuntime{
			start:  func(bundle, id string) error { return runDetachedWith(b, config, bundle, id) },
			remove: func(id string) { deleteOKWith(b, config, id) },
			force:  func(id string) { runtimeCmdWith(b, config, nil, "delete", "--force", id) },
		}
	}
	b.Run("boot", func(b *testing.B) { tenContainers(b, initos(env.config), "") })
	for _, tpl := range templateVariants[:2] {
		b.Run(tpl.name, func(b *testing.B) {
			cfg := writeConfig(b, tpl.config)
			// The shape's template, built before the figures.
			if err := runDetachedWith(b, cfg, writeBundle(b, busyboxSpec(b, "sleep", "3600")), "ten-warm"); err != nil {
				b.Fatal(err)
			}
			deleteOKWith(b, cfg, "ten-warm")
			tenContainers(b, initos(cfg), ".tpl"+tpl.suffix)
		})
	}
	b.Run("runc", func(b *testing.B) {
		if _, err := exec.LookPath("runc"); err != nil {
			b.Skip("runc not installed (Debian's package runc)")
		}
		root := b.TempDir()
		runc := func(args ...string) error {
			return runToFile(b, "runc", append([]string{"--root", root}, args...)...)
		}
		tenContainers(b, tenRuntime{
			start: func(bundle, id string) error { return runc("run", "--detach", "--bundle", bundle, id) },
			remove: func(id string) {
				if err := runc("delete", "--force", id); err != nil {
					b.Fatal(err)
				}
			},
			force: func(id string) { _ = runc("delete", "--force", id) },
			runc:  true,
		}, ".runc")
	})
}

// tenRuntime is how tenContainers starts and removes a container.
type tenRuntime struct {
	start  func(bundle, id string) error
	remove func(id string) // fails the benchmark
	force  func(id string) // at cleanup, quietly
	// runc: the bundles get an engine's capabilities (runc applies them
	// on the host), and there are no VM processes to measure.
	runc bool
}

func tenContainers(b *testing.B, rt tenRuntime, suffix string) {
	const n = 10
	bundles := make([]string, n)
	for i := range bundles {
		s := busyboxSpec(b, "sleep", "3600")
		if rt.runc {
			withEngineCaps(s)
		}
		bundles[i] = writeBundle(b, s)
	}
	for iter := 0; iter < b.N; iter++ {
		var serial []float64
		var cpu float64 // the host's busy CPU time over the serial starts
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("ten-s%d-%d", iter, i)
			busy0, err := hostBusyMS()
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := rt.start(bundles[i], id); err != nil {
				b.Fatal(err)
			}
			serial = append(serial, ms(time.Since(t0)))
			busy1, err := hostBusyMS()
			if err != nil {
				b.Fatal(err)
			}
			cpu += busy1 - busy0
			rt.remove(id)
		}
		settle()
		before, err := meminfo("MemAvailable")
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, n)
		took := make([]float64, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range ids {
			ids[i] = fmt.Sprintf("ten-p%d-%d", iter, i)
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				t0 := time.Now()
				errs[i] = rt.start(bundles[i], ids[i])
				took[i] = ms(time.Since(t0))
			}(i)
		}
		wg.Wait()
		ok := 0
		for i, err := range errs {
			if err != nil {
				b.Error(err)
				continue
			}
			ok++
			b.Cleanup(func() { rt.force(ids[i]) })
		}
		settle()
		after, err := meminfo("MemAvailable")
		if err != nil {
			b.Fatal(err)
		}
		var vmmPSS, monPSS, fsdPSS float64
		for _, id := range ids {
			v, m, f := containerPSS(id) // 0 for runc's: no VM processes
			vmmPSS, monPSS, fsdPSS = vmmPSS+v, monPSS+m, fsdPSS+f
		}
		for _, id := range ids {
			rt.remove(id)
		}
		record("start.serial.p50"+suffix, median(serial))
		record("start.serial.cpu"+suffix, cpu/n)
		record("start.parallel-floor"+suffix, parallelFloor(n, cpu/n, median(serial), runtime.NumCPU()))
		record("start.parallel.p50"+suffix, median(took))
		record("start.parallel.ok"+suffix, float64(ok))
		record("mem.per-container"+suffix, float64(before-after)/1024/n)
		if !rt.runc {
			record("mem.vmm-pss"+suffix, vmmPSS/n)
			record("mem.monitor-pss"+suffix, monPSS/n)
			record("mem.virtiofsd-pss"+suffix, fsdPSS/n)
		}
		b.ReportMetric(median(serial), "serial-p50-ms")
		b.ReportMetric(median(took), "parallel-p50-ms")
		b.ReportMetric(float64(before-after)/1024/n, "MiB/container")
		if !rt.runc {
			b.ReportMetric(vmmPSS/n, "vmm-pss-MiB")
		}
	}
}

// parallelFloor is the lowest ratio of the p50 of n starts at once to the
// serial p50 that cpus CPUs allow, when each start is cpuMS of the host's
// CPU time: by a time t the CPUs have done at most cpus×t of work, so the
// k-th start ends at k×cpuMS/cpus at the earliest whatever the order, and
// the p50 of ten (the mean of the 5th and 6th) at 5.5×cpuMS/cpus. No start
// is faster than alone, so the ratio is at least 1.
func parallelFloor(n int, cpuMS, serialMS float64, cpus int) float64 {
	if serialMS <= 0 || cpus <= 0 {
		return 0
	}
	var mid float64 // the mean rank of the middle starts: 5.5 of 10
	if n%2 == 0 {
		mid = float64(n)/2 + 0.5
	} else {
		mid = float64(n+1) / 2
	}
	return max(1, mid*cpuMS/float64(cpus)/serialMS)
}

// settle lets the host's memory figures settle: idle guests have booted
// and the VMMs' startup allocations are freed.
func settle() { time.Sleep(5 * time.Second) }

// runDetachedWith is `initos-runtime run -d` with config (runToFile).
func runDetachedWith(t testing.TB, config, bundle, id string) error {
	return runToFile(t, env.bin, "--config", config, "run", "--detach", "--bundle", bundle, id)
}

// runToFile runs a runtime's command whose detached container keeps the
// stdio it inherits: a file, not the pipes runtimeCmd would wait on until
// the container exits. The file's text is in the error.
func runToFile(t testing.TB, bin string, args ...string) error {
	logPath := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, b)
	}
	return nil
}

func deleteOKWith(t testing.TB, config, id string) {
	t.Helper()
	if r := runtimeCmdWith(t, config, nil, "delete", "--force", id); r.code != 0 {
		t.Fatalf("delete -f %s: exit %d: %s", id, r.code, r.stderr)
	}
}

// containerPSS sums, in MiB, the proportional set size of container id's
// VMM, monitor and virtiofsd processes: the VMM and virtiofsd name its
// state directory on their command lines, the monitor ends its own with
// the id.
func containerPSS(id string) (vmm, monitor, virtiofsd float64) {
	stateDir := filepath.Join(env.cfg.Root, id) + "/"
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		raw, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		var sum *float64
		switch {
		case strings.Contains(args[0], "qemu-system") && bytes.Contains(raw, []byte(stateDir)):
			sum = &vmm
		case strings.HasSuffix(args[0], "virtiofsd") && bytes.Contains(raw, []byte(stateDir)):
			sum = &virtiofsd
		case strings.HasSuffix(args[0], "initos-runtime") && args[len(args)-1] == id && slices.Contains(args, "monitor"):
			sum = &monitor
		default:
			continue
		}
		*sum += pssMiB(p)
	}
	return vmm, monitor, virtiofsd
}

// pssMiB is a process's Pss from smaps_rollup, in MiB.
func pssMiB(proc string) float64 {
	b, err := os.ReadFile(filepath.Join(proc, "smaps_rollup"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024
		}
	}
	return 0
}

func TestParallelFloor(t *testing.T) {
	for _, tc := range []struct {
		name                string
		n, cpus             int
		cpuMS, serialMS, is float64
	}{
		// 2 CPUs, a start that keeps 1.15 CPUs busy: the 5th and 6th of
		// ten end at 2.5 and 3 starts' CPU time at the earliest.
		{"cpu-bound", 10, 2, 1150, 1000, 3.1625},
		{"one cpu's worth", 10, 2, 1000, 1000, 2.75},
		// A start that mostly waits lets ten overlap: the floor is 1.
		{"waiting", 10, 2, 100, 1000, 1},
		{"many cpus", 10, 64, 1000, 1000, 1},
		{"odd n", 9, 1, 100, 100, 5},
		{"no serial figure", 10, 2, 100, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parallelFloor(tc.n, tc.cpuMS, tc.serialMS, tc.cpus); math.Abs(got-tc.is) > 1e-9 {
				t.Errorf("parallelFloor(%d, %g, %g, %d) = %g, want %g", tc.n, tc.cpuMS, tc.serialMS, tc.cpus, got, tc.is)
			}
		})
	}
}

func TestHostBusyMS(t *testing.T) {
	a, err := hostBusyMS()
	if err != nil {
		t.Fatal(err)
	}
	// Spin until this process has used 200 ms more CPU time: the host's
	// busy time grows by at least that (less its 10 ms ticks), however
	// busy the host is or how much of its time its own host steals.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for end := cpu() + 200*time.Millisecond; cpu() < end; {
	}
	b, err := hostBusyMS()
	if err != nil {
		t.Fatal(err)
	}
	if d := b - a; d < 180 {
		t.Errorf("the host's busy time grew by %g ms while this process used 200 ms of CPU, want at least 180", d)
	}
}
