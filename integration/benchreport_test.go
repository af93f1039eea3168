package integration

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// The benchmarks record their figures here; with INITOS_BENCH_REPORT
// naming a file, TestMain writes them there as Markdown (make bench:
// docs/benchmarks.md) with an SVG chart of a cold boot's phases beside it.
var figures = struct {
	sync.Mutex
	m     map[string]float64
	steps []string // the guest's boot steps, in the order the agent took them
}{m: map[string]float64{}}

// record sets a figure; a benchmark run again (b.N 1, then N) overwrites
// its figures with the later run's.
func record(key string, v float64) {
	figures.Lock()
	figures.m[key] = v
	figures.Unlock()
}

// figure returns a recorded figure.
func figure(key string) (float64, bool) {
	figures.Lock()
	defer figures.Unlock()
	v, ok := figures.m[key]
	return v, ok
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// A target of issue 14: a ratio or an amount with its bound.
type target struct {
	what     string
	num, den string  // figure keys: num/den, or num alone when den is ""
	max      float64 // the bound
	unit     string  // "×" or "ms" or "MiB"
	// floor, when set, is the figure below which this host does not let
	// the measure go (see the report's text).
	floor string
}

var targets = []target{
	{"`podman run --rm IMG true` with templates vs runc", "podman.run.initos-tpl", "podman.run.runc", 3, "×", ""},
	{"`podman run --rm IMG true` booting vs runc", "podman.run.initos", "podman.run.runc", 3, "×", ""},
	{"`nerdctl run --rm IMG true` with templates vs runc", "nerdctl.run.initos-tpl", "nerdctl.run.runc", 3, "×", ""},
	{"`nerdctl run --rm IMG true` booting vs runc", "nerdctl.run.initos", "nerdctl.run.runc", 3, "×", ""},
	{"`podman exec C true` vs runc", "podman.exec.initos", "podman.exec.runc", 1.5, "×", ""},
	{"cold boot: agent ready vs the bare kernel's time to /init", "boot.ready", "boot.bare", 1.3, "×", ""},
	{"host time outside the guest (disk, initrd, VMM start, teardown's host part)", "boot.host", "", 100, "ms", "vmm.start.empty"},
	{"10 started at once with templates: p50 vs the serial p50", "start.parallel.p50.tpl", "start.serial.p50.tpl", 2, "×", "start.parallel-floor.tpl"},
	{"10 started at once booting: p50 vs the serial p50", "start.parallel.p50", "start.serial.p50", 2, "×", "start.parallel-floor"},
	{"host memory per idle busybox container with templates", "mem.per-container.tpl", "", 64, "MiB", ""},
	{"host memory per idle busybox container booted", "mem.per-container", "", 64, "MiB", ""},
}

// writeReport writes the figures to path as Markdown, and the cold boot's
// phases as an SVG chart next to it (same name, .svg).
func writeReport(path string) error {
	figures.Lock()
	steps := slices.Clone(figures.steps)
	figures.Unlock()
	var b bytes.Buffer
	f := func(key, format string) string {
		v, ok := figure(key)
		if !ok {
			return "–"
		}
		return fmt.Sprintf(format, v)
	}
	// Host time outside the guest: what the host does before the VMM
	// starts, the VMM's own start, and teardown's host part (the guest's
	// quiescing is the guest's time).
	if start, ok := figure("vmm.start"); ok {
		if teardown, ok := figure("phase.teardown-host"); ok {
			disk, _ := figure("phase.disk")
			initrd, _ := figure("phase.initrd")
			record("boot.host", disk+initrd+start+teardown)
		}
	}
	accel := vmm.DetectAccel()
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`INITOS_BENCH_REPORT`); every figure below comes from one run of it, side by side.\n\n")
	fmt.Fprintf(&b, "- Date: %s\n- Host: %s, %d CPUs, %s\n- Accelerator: **%s** (%s)\n- VMM: %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), cpuModel(), runtime.NumCPU(), memTotal(), accel.Name, accel.Reason, qemuVersion())
	if accel.Name == vmm.AccelTCG {
		fmt.Fprintf(&b, "**Every VM figure here is TCG's** (qemu emulating the guest's CPU in software): the guest's kernel and agent run many times slower than on KVM, and so does everything that waits for them. The host-side figures (disk, initrd, VMM start, teardown's host part) and runc's are not TCG-bound. On a machine where KVM runs a stock kernel, the same `make bench` prints its figures.\n\n")
	}

	fmt.Fprintf(&b, "## Targets\n\n")
	fmt.Fprintf(&b, "\"This host's floor\" is how low the measure can go here whatever the runtime does: for the host time, qemu's own start with no kernel and no devices (a VMM is started per container); for ten at once, what this host's %d CPUs allow when each start costs the host the CPU time it took one at a time (the k-th of ten ends at k × that time / the CPUs at the earliest; the p50 is the mean of the 5th and 6th).\n\n", runtime.NumCPU())
	fmt.Fprintf(&b, "| target | measured | bound | met | this host's floor |\n|---|---|---|---|---|\n")
	for _, t := range targets {
		num, ok1 := figure(t.num)
		v, ok := num, ok1
		if t.den != "" {
			den, ok2 := figure(t.den)
			ok = ok1 && ok2 && den > 0
			if ok {
				v = num / den
			}
		}
		if !ok {
			fmt.Fprintf(&b, "| %s | not measured | ≤ %g %s | – | – |\n", t.what, t.max, t.unit)
			continue
		}
		met := "no"
		if v <= t.max {
			met = "yes"
		}
		floor := "–"
		if t.floor != "" {
			floor = f(t.floor, "%.2f")
			if floor != "–" {
				floor += " " + t.unit
			}
		}
		fmt.Fprintf(&b, "| %s | %.2f %s | ≤ %g %s | %s | %s |\n", t.what, v, t.unit, t.max, t.unit, met, floor)
	}

	fmt.Fprintf(&b, "\n## Start, exec and stop beside runc (ms per operation)\n\n")
	fmt.Fprintf(&b, "\"initos-runtime, templates\": VM templates on (9p shares), each VM restored from its shape's template instead of booted. The podman and nerdctl rows are medians of interleaved runs: each op runs the command once under every runtime, in an order that turns with each op, so a drift of the host's speed reaches every column alike. The `initos-runtime run` row is a mean of runs timed one runtime after another.\n\n")
	fmt.Fprintf(&b, "| operation | runc | crun | initos-runtime | initos-runtime, templates |\n|---|---|---|---|---|\n")
	for _, op := range []struct{ name, key string }{
		{"`podman run --rm --network none IMG true`", "podman.run"},
		{"`podman exec C true`", "podman.exec"},
		{"`nerdctl run --rm --network none IMG true`", "nerdctl.run"},
		{"`initos-runtime run` / `runc run` of a bundle (`true`)", "cli.run"},
	} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", op.name, f(op.key+".runc", "%.0f"), f(op.key+".crun", "%.0f"),
			f(op.key+".initos", "%.0f"), f(op.key+".initos-tpl", "%.0f"))
	}

	fmt.Fprintf(&b, "\n## A cold boot, phase by phase (ms, mean of the runs of `initos-runtime run --timings`)\n\n")
	fmt.Fprintf(&b, "The host measures its phases; the guest reports its own by its clock (CLOCK_BOOTTIME), which under TCG stands still for part of the kernel's early boot: that time, and the VMM's own start, is the \"VMM start, untracked\" row (boot minus the guest's time to ready).\n\n")
	fmt.Fprintf(&b, "| phase | side | ms |\n|---|---|---|\n")
	for _, p := range bootPhases(steps) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", p.label, p.side, f(p.key, "%.1f"))
	}
	fmt.Fprintf(&b, "| **boot** (VMM start → agent answers) | host | %s |\n", f("boot.ready", "%.0f"))
	fmt.Fprintf(&b, "| bare kernel: VMM start → its /init (same machine, memory, CPUs; no devices) | host | %s |\n", f("boot.bare", "%.0f"))
	fmt.Fprintf(&b, "| host time outside the guest (disk + initrd + VMM start + teardown's host part) | host | %s |\n", f("boot.host", "%.0f"))
	fmt.Fprintf(&b, "| of which the VMM's start: qemu until QMP answers, the guest paused; with no kernel and no devices | host | %s; %s |\n", f("vmm.start", "%.0f"), f("vmm.start.empty", "%.0f"))
	fmt.Fprintf(&b, "| **boot from a template** (VMM start → the restored agent answers; 9p shares) | host | %s |\n", f("boot.restored", "%.0f"))
	fmt.Fprintf(&b, "| boot from a template, virtiofs shares (the RAM copied, the shares hot-added) | host | %s |\n", f("boot.restored.vfs", "%.0f"))
	fmt.Fprintf(&b, "| boot from a template, a disk root (its image swapped in) | host | %s |\n", f("boot.restored.disk", "%.0f"))
	fmt.Fprintf(&b, "| `initos-runtime run` of `true` from a template: 9p, virtiofs, disk root | host | %s, %s, %s |\n",
		f("cli.run.initos-tpl", "%.0f"), f("cli.run.initos-tpl.vfs", "%.0f"), f("cli.run.initos-tpl.disk", "%.0f"))
	fmt.Fprintf(&b, "\n![a cold boot's phases](%s)\n", strings.TrimSuffix(baseName(path), ".md")+".svg")

	// Ten at once against one at a time, for each runtime: runc's shows
	// what the host's CPUs allow any runtime whose start is CPU work.
	for _, sfx := range []string{"", ".tpl", ".tpl.vfs", ".runc"} {
		par, ok1 := figure("start.parallel.p50" + sfx)
		ser, ok2 := figure("start.serial.p50" + sfx)
		if ok1 && ok2 && ser > 0 {
			record("start.parallel-ratio"+sfx, par/ser)
		}
	}
	fmt.Fprintf(&b, "\n## Ten idle busybox containers (`run -d` of `sleep`)\n\n| figure | booted | from a template (9p) | from a template (virtiofs) | runc |\n|---|---|---|---|---|\n")
	for _, row := range []struct{ name, key, format, unit string }{
		{"`run -d` one at a time: p50", "start.serial.p50", "%.0f", "ms"},
		{"`run -d` ten at once: p50", "start.parallel.p50", "%.0f", "ms"},
		{"ten at once vs one at a time (p50s)", "start.parallel-ratio", "%.2f", "×"},
		{"the host's busy CPU time per start, one at a time", "start.serial.cpu", "%.0f", "ms"},
		{"the lowest ratio this host's CPUs allow (see Targets)", "start.parallel-floor", "%.2f", "×"},
		{"`run -d` ten at once: succeeded", "start.parallel.ok", "%.0f", "of 10"},
		{"host memory per container (MemAvailable drop / 10)", "mem.per-container", "%.1f", "MiB"},
		{"the VMM's PSS", "mem.vmm-pss", "%.1f", "MiB"},
		{"the monitor's PSS", "mem.monitor-pss", "%.1f", "MiB"},
		{"virtiofsd's PSS (none with 9p)", "mem.virtiofsd-pss", "%.1f", "MiB"},
	} {
		runc := f(row.key+".runc", row.format)
		if runc != "–" {
			runc += " " + row.unit
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s %s | %s %s | %s |\n", row.name, f(row.key, row.format), row.unit, f(row.key+".tpl", row.format), row.unit,
			f(row.key+".tpl.vfs", row.format), row.unit, runc)
	}

	fmt.Fprintf(&b, "\n## Work in the container's root (ms, by the guest's clock)\n\n")
	fmt.Fprintf(&b, "`BenchmarkRootfsWorkload`: one exec of `/bin/true` from a shell (the mean of %d), and an `ls -lR` of the image's directories.\n\n", rootfsExecs)
	fmt.Fprintf(&b, "| root | exec | `ls -lR` |\n|---|---|---|\n")
	for _, t := range rootfsBenchTargets {
		what := map[string]string{"runc": "runc (the host's filesystem)", "share-virtiofs": "root share, virtiofs",
			"share-9p": "root share, 9p", "disk": "btrfs disk"}[t.name]
		fmt.Fprintf(&b, "| %s | %s | %s |\n", what, f("rootfs.exec."+t.name, "%.1f"), f("rootfs.ls."+t.name, "%.0f"))
	}

	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(strings.TrimSuffix(path, ".md")+".svg", bootChart(steps), 0o644)
}

// bootPhase is one row of the cold boot's table and one segment of its chart.
type bootPhase struct {
	label, side, key string
}

// bootPhases are a cold boot's phases in the order they happen.
func bootPhases(steps []string) []bootPhase {
	ps := []bootPhase{
		{"disk (rootfs → the VM's root)", "host", "phase.disk"},
		{"initrd lookup", "host", "phase.initrd"},
		{"VMM start, untracked by the guest's clock", "host", "phase.vmm"},
		{"kernel → /init", "guest", "phase.kernel"},
	}
	for _, s := range steps {
		ps = append(ps, bootPhase{"agent: " + s, "guest", "step." + s})
	}
	return append(ps,
		bootPhase{"container setup (mounts, devices)", "guest", "phase.setup"},
		bootPhase{"process run (`true`)", "guest", "phase.run"},
		bootPhase{"teardown: the agent ends the processes, syncs, unmounts", "guest", "phase.quiesce"},
		bootPhase{"teardown: the VMM's exit, cleanup", "host", "phase.teardown-host"},
	)
}

// bootChart draws the cold boot's phases as one stacked bar, with runc's
// whole run as a bar beneath it on the same scale.
func bootChart(steps []string) []byte {
	const width, left, barH = 900.0, 10.0, 28.0
	type seg struct {
		label string
		ms    float64
		color string
	}
	colors := map[string]string{"host": "#4e79a7", "guest": "#59a14f", "host+guest": "#9c755f"}
	var segs []seg
	total := 0.0
	for _, p := range bootPhases(steps) {
		v, ok := figure(p.key)
		if !ok || v <= 0 {
			continue
		}
		c := colors[p.side]
		if strings.HasPrefix(p.key, "step.") {
			c = "#8cd17d"
		}
		if p.key == "phase.vmm" {
			c = "#bab0ac"
		}
		segs = append(segs, seg{p.label, v, c})
		total += v
	}
	runc, _ := figure("cli.run.runc")
	scale := (width - 2*left) / math.Max(math.Max(total, runc), 1)
	var b bytes.Buffer
	h := 150.0 + 16*float64(len(segs))
	if _, ok := figure("cli.run.initos-tpl"); ok {
		h += 10 + barH
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14">initos-runtime run (%.0f ms, %s) beside runc run (%.0f ms)</text>`+"\n", left, total, vmm.DetectAccel().Name, runc)
	x := left
	for _, s := range segs {
		w := s.ms * scale
		fmt.Fprintf(&b, `<rect x="%.1f" y="30" width="%.1f" height="%.0f" fill="%s" stroke="#fff"><title>%s: %.1f ms</title></rect>`+"\n", x, w, barH, s.color, xmlText(s.label), s.ms)
		x += w
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="#e15759"><title>runc run: %.1f ms</title></rect>`+"\n", left, 40+barH, math.Max(runc*scale, 1), barH, runc)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">runc run: %.0f ms</text>`+"\n", left+math.Max(runc*scale, 1)+4, 40+barH+18, runc)
	y := 90 + barH
	if tpl, ok := figure("cli.run.initos-tpl"); ok {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="#f28e2b"><title>initos-runtime run from a template: %.1f ms</title></rect>`+"\n", left, 50+2*barH, math.Max(tpl*scale, 1), barH, tpl)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">initos-runtime run from a template: %.0f ms</text>`+"\n", left+math.Max(tpl*scale, 1)+4, 50+2*barH+18, tpl)
		y += 10 + barH
	}
	for _, s := range segs {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s: %.1f ms</text>`+"\n", left, y-9, s.color, left+16, y, xmlText(s.label), s.ms)
		y += 16
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func xmlText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '`':
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func baseName(p string) string { return p[strings.LastIndex(p, "/")+1:] }

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	kib, err := meminfo("MemTotal")
	if err != nil {
		return "unknown memory"
	}
	return fmt.Sprintf("%.0f GiB", float64(kib)/(1<<20))
}

func qemuVersion() string {
	out, err := exec.Command("qemu-system-x86_64", "--version").Output()
	if err != nil {
		return "qemu (version unknown)"
	}
	l, _, _ := strings.Cut(string(out), "\n")
	return l
}
