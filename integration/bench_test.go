package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

var (
	timingsRe = regexp.MustCompile(`(\w+)=([0-9.]+(?:ns|µs|us|ms|s|m[0-9.]*s?)+)`)
	// The guest line of --timings: "guest: kernel=… agent=… (step=… …)".
	guestRe = regexp.MustCompile(`guest: kernel=(\S+) agent=(\S+) \(([^)]*)\)`)
)

// parseDuration reads a duration as --timings prints it.
func parseDuration(s string) (time.Duration, bool) {
	d, err := time.ParseDuration(strings.Replace(s, "µ", "u", 1))
	return d, err == nil
}

// templateVariants are the template shapes the benchmarks compare: 9p
// shares (clones share the template's memory), virtiofs shares (each
// clone's RAM a copy), a disk root.
var templateVariants = []struct {
	name, suffix string
	config       func(*runtime.Config)
}{
	{"template", "", func(c *runtime.Config) { c.ShareFS = "9p"; c.Templates = true }},
	{"template-virtiofs", ".vfs", func(c *runtime.Config) { c.ShareFS = "virtiofs"; c.Templates = true }},
	{"template-disk", ".disk", func(c *runtime.Config) { c.Rootfs = runtime.RootfsDisk; c.ShareFS = "9p"; c.Templates = true }},
}

// BenchmarkRunBusybox times `initos-runtime run` of the busybox bundle
// phase by phase, host and guest (disk, initrd lookup, VMM start, the
// kernel to /init and each step of the agent by the guest's clock, guest
// setup, process run, teardown), and `runc run` of the same bundle in the
// same run.
func BenchmarkRunBusybox(b *testing.B) {
	needVMs(b)
	s := busyboxSpec(b, "true")
	withEngineCaps(s) // runc runs it too
	dir := writeBundle(b, s)
	b.Run("initos-runtime", func(b *testing.B) {
		sums := map[string]time.Duration{}
		var steps []string
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("bench-%d", i)
			r := runtimeCmd(b, nil, "run", "--timings", "--bundle", dir, id)
			if r.code != 0 {
				b.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			host, _, _ := strings.Cut(string(r.stderr), "\nguest: ")
			for _, m := range timingsRe.FindAllStringSubmatch(host, -1) {
				if d, ok := parseDuration(m[2]); ok {
					sums[m[1]] += d
				}
			}
			g := guestRe.FindStringSubmatch(string(r.stderr))
			if g == nil {
				b.Fatalf("no guest boot trace in --timings: %s", r.stderr)
			}
			kernel, ok1 := parseDuration(g[1])
			agent, ok2 := parseDuration(g[2])
			if !ok1 || !ok2 {
				b.Fatalf("bad guest boot trace: %s", g[0])
			}
			sums["kernel"] += kernel
			sums["guest-ready"] += kernel + agent
			steps = steps[:0]
			for _, f := range strings.Fields(g[3]) {
				name, v, _ := strings.Cut(f, "=")
				if d, ok := parseDuration(v); ok {
					sums["step."+name] += d
					steps = append(steps, name)
				}
			}
		}
		mean := func(k string) float64 { return ms(sums[k]) / float64(b.N) }
		for _, phase := range []string{"disk", "initrd", "boot", "setup", "run", "teardown", "quiesce", "kernel"} {
			b.ReportMetric(mean(phase), phase+"-ms/op")
			record("phase."+phase, mean(phase))
		}
		// Teardown's host part: the VMM's exit and the cleanup after the
		// guest said it had quiesced.
		record("phase.teardown-host", mean("teardown")-mean("quiesce"))
		b.ReportMetric(mean("guest-ready")-mean("kernel"), "agent-ms/op")
		record("phase.vmm", mean("boot")-mean("guest-ready"))
		record("boot.ready", mean("boot"))
		for _, s := range steps {
			record("step."+s, mean("step."+s))
		}
		figures.Lock()
		figures.steps = steps
		figures.Unlock()
		record("cli.run.initos", ms(b.Elapsed())/float64(b.N))
	})
	for _, tpl := range templateVariants {
		b.Run("initos-runtime-"+tpl.name, func(b *testing.B) {
			cfg := writeConfig(b, tpl.config)
			// The template of the shape, built before the timing.
			if r := runtimeCmdWith(b, cfg, nil, "run", "--bundle", dir, "bench-"+tpl.name+"-warm"); r.code != 0 {
				b.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			b.ResetTimer()
			var boot time.Duration
			for i := 0; i < b.N; i++ {
				r := runtimeCmdWith(b, cfg, nil, "run", "--timings", "--bundle", dir, fmt.Sprintf("bench-%s-%d", tpl.name, i))
				if r.code != 0 || !strings.Contains(string(r.stderr), "restored from a template; ") {
					b.Fatalf("exit %d, not restored: %s", r.code, r.stderr)
				}
				if m := regexp.MustCompile(`boot=(\S+)`).FindStringSubmatch(string(r.stderr)); m != nil {
					if d, ok := parseDuration(m[1]); ok {
						boot += d
					}
				}
			}
			b.ReportMetric(ms(boot)/float64(b.N), "boot-ms/op")
			record("boot.restored"+tpl.suffix, ms(boot)/float64(b.N))
			record("cli.run.initos-tpl"+tpl.suffix, ms(b.Elapsed())/float64(b.N))
		})
	}
	b.Run("runc", func(b *testing.B) {
		if _, err := exec.LookPath("runc"); err != nil {
			b.Skip("runc not installed")
		}
		for i := 0; i < b.N; i++ {
			out, err := exec.Command("runc", "--root", b.TempDir(), "run", "--bundle", dir, fmt.Sprintf("bench-runc-%d", i)).CombinedOutput()
			if err != nil {
				b.Fatalf("runc run: %v\n%s", err, out)
			}
		}
		record("cli.run.runc", ms(b.Elapsed())/float64(b.N))
	})
}

// BenchmarkBareKernel boots the runtime's kernel and initrd on the same
// machine type, memory and CPUs as a container's VM, without devices, with
// its console in a file as a container VM's is, and with rdinit=/ (a
// directory: the kernel's exec of it fails, as does its search for another
// init, and it panics), so that the VMM exits the moment the kernel would
// run /init, after all of its own init (freeing its init memory, making its
// data read-only): the bare kernel's own time to /init. An rdinit that does
// not exist panicked earlier, mounting a root device, before that work.
// vmm-start is the VMM's own start: exec to its QMP monitor answering a
// command, with the guest paused (the greeting comes earlier, from the
// monitor's I/O thread, while the machine is still being made: 56 against
// 85 ms), without its quit and exit, which the runtime's teardown counts.
func BenchmarkBareKernel(b *testing.B) {
	needVMs(b)
	a, err := runtime.FindAssets(env.cfg)
	if err != nil {
		b.Fatal(err)
	}
	ird, err := a.Initrd(env.cfg)
	if err != nil {
		b.Fatal(err)
	}
	// machine is the VM without a kernel; base, with the kernel and initrd.
	machine := func(extra ...string) []string {
		accel := []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
		if vmm.DetectAccel().Name == vmm.AccelKVM {
			accel = []string{"-accel", "kvm", "-cpu", "host"}
		}
		c := append([]string{"-M", "microvm,x-option-roms=off,rtc=on"}, accel...)
		c = append(c, "-smp", strconv.Itoa(env.cfg.CPUs), "-m", strconv.Itoa(env.cfg.MemoryMiB),
			"-nodefaults", "-no-reboot", "-nographic")
		return append(c, extra...)
	}
	base := func(extra ...string) []string {
		return machine(append([]string{"-kernel", a.Vmlinux, "-initrd", ird}, extra...)...)
	}
	b.Run("to-init", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			console := filepath.Join(b.TempDir(), "console.log")
			out, err := exec.CommandContext(ctx, "qemu-system-x86_64", base(
				"-chardev", "file,id=console,path="+console, "-serial", "chardev:console",
				"-append", "console=ttyS0 panic=-1 tsc_early_khz="+strconv.Itoa(vmm.TSCKHz())+" "+vmm.GuestKernelArgs+" rdinit=/")...).CombinedOutput()
			cancel()
			log, rerr := os.ReadFile(console)
			if err != nil || rerr != nil || !bareReachedInit(string(log)) {
				b.Fatalf("bare kernel boot: %v; qemu said %q; its console (%v):\n%s", err, out, rerr, tail(string(log), 2000))
			}
		}
		record("boot.bare", ms(b.Elapsed())/float64(b.N))
	})
	// Ten starts an op, and their median: one start is a tenth of a
	// second, and on a busy host a few of them take half as long again
	// (3 runs gave a mean of 152 ms where 20 gave 114).
	vmmStart := func(b *testing.B, key string, args []string) {
		const starts = 10
		var took []float64
		for i := 0; i < b.N*starts; i++ {
			sock := filepath.Join(b.TempDir(), "qmp.sock")
			cmd := exec.Command("qemu-system-x86_64", append(args, "-S", "-serial", "none", "-qmp", "unix:"+sock+",server=on,wait=off")...)
			t0 := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			err := qmpQuit(sock, time.Minute, func() { took = append(took, ms(time.Since(t0))) })
			if werr := cmd.Wait(); err == nil && werr != nil {
				err = werr
			}
			if err != nil {
				b.Fatalf("qemu start and quit: %v", err)
			}
		}
		b.ReportMetric(median(took), "ready-p50-ms")
		record(key, median(took))
	}
	b.Run("vmm-start", func(b *testing.B) { vmmStart(b, "vmm.start", base("-append", "console=ttyS0")) })
	// The same qemu with no kernel and no initrd to load: what its own
	// start costs this host before a VM is made, which the runtime's
	// host time cannot go below while it starts a VMM per container.
	b.Run("vmm-start-empty", func(b *testing.B) { vmmStart(b, "vmm.start.empty", machine()) })
}

// qmpQuit waits for the QMP socket, reads its greeting, calls ready once
// qemu has answered qmp_capabilities (its main loop runs), and quits qemu.
func qmpQuit(sock string, timeout time.Duration, ready func()) error {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("qmp socket %s: %w", sock, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	for _, c := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"quit"}`} {
		if _, err := fmt.Fprintln(conn, c); err != nil {
			return err
		}
		if _, err := r.ReadString('\n'); err != nil {
			return fmt.Errorf("qmp %s: %w", c, err)
		}
		if ready != nil {
			ready()
			ready = nil
		}
	}
	return nil
}

// meminfo reads one field of /proc/meminfo, in KiB.
func meminfo(field string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo", field)
}

// hostBusyMS is the CPU time the host's CPUs have spent busy since its
// boot, in milliseconds: /proc/stat's cpu line, user, nice, system, irq
// and softirq, in USER_HZ (100 a second on Linux, whatever the kernel's
// HZ). Idle and iowait are not work; steal is time the host's own host
// took from it.
func hostBusyMS() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i, line, err)
		}
		busy += v
	}
	return busy * 10, nil
}

// bareReachedInit reports whether a bare kernel's console shows the panic
// of a kernel that tried its rdinit (/) and found no init: it reached the
// point where a container VM's kernel runs the agent. (An rdinit it could
// not reach panics otherwise, mounting a root device.)
func bareReachedInit(console string) bool {
	return strings.Contains(console, "No working init found")
}
