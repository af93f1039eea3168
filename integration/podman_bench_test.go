package integration

import (
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// podmanBenchRuntime is one runtime BenchmarkPodman times.
type podmanBenchRuntime struct {
	name string
	p    *podman
}

// Name is the runtime's name in the report's keys.
func (rt podmanBenchRuntime) Name() string { return rt.name }

// BenchmarkPodman times `podman run --rm IMG true` and `podman exec C true`
// under runc, crun (where it runs: Debian's crun 1.8 fails under podman on
// these hosts, and is skipped then), initos-runtime, and initos-runtime
// with VM templates (9p shares; its warm-up run builds the template), in
// one run. Each op runs the command once under every runtime, in an order
// that turns with each op, and each runtime's figure is the median of its
// runs: on a host whose speed drifts within minutes (this one's does), a
// runtime timed in a block of its own would carry the drift into its ratio
// to runc's.
func BenchmarkPodman(b *testing.B) {
	needVMs(b)
	var rts []podmanBenchRuntime
	for _, rt := range []string{"runc", "crun", "initos", "initos-tpl"} {
		var p *podman
		switch rt {
		case "initos":
			p = newPodmanFor(b, rt)
		case "initos-tpl":
			p = newPodmanWithConfig(b, templatesConfig(b))
		default:
			if _, err := exec.LookPath(rt); err != nil {
				b.Logf("%s not installed: not timed", rt)
				continue
			}
			p = newPodmanFor(b, rt)
		}
		if r := p.run(b, nil, "run", "--rm", "--network", "none", podmanImage, "true"); r.code != 0 {
			if rt == "initos" || rt == "initos-tpl" {
				b.Fatalf("initos-runtime under podman: exit %d: %s", r.code, r.stderr)
			}
			b.Logf("%s does not run under podman here: exit %d: %s", rt, r.code, r.stderr)
			continue
		}
		rts = append(rts, podmanBenchRuntime{rt, p})
	}
	b.Run("run-rm-true", func(b *testing.B) {
		interleaved(b, rts, podmanBenchRuntime.Name, "podman.run.", nil, func(b *testing.B, rt podmanBenchRuntime) {
			rt.p.ok(b, "run", "--rm", "--network", "none", podmanImage, "true")
		})
	})
	b.Run("exec-true", func(b *testing.B) {
		for _, rt := range rts {
			rt.p.detached(b, "bench-exec-"+rt.name, "sleep", "3600")
		}
		interleaved(b, rts, podmanBenchRuntime.Name, "podman.exec.", nil, func(b *testing.B, rt podmanBenchRuntime) {
			rt.p.ok(b, "exec", "bench-exec-"+rt.name, "true")
		})
		for _, rt := range rts {
			rt.p.ok(b, "rm", "-f", "-t", "0", "bench-exec-"+rt.name)
		}
	})
}

// interleaved runs f once for every runtime in each of b.N ops, starting
// each op one runtime further on, and records the median of each
// runtime's times as prefix+name(rt) (ms). setup, when set, runs untimed
// before each f.
func interleaved[T any](b *testing.B, rts []T, name func(T) string, prefix string, setup, f func(*testing.B, T)) {
	took := make([][]float64, len(rts))
	for i := 0; i < b.N; i++ {
		for j := range rts {
			k := (i + j) % len(rts)
			if setup != nil {
				setup(b, rts[k])
			}
			t0 := time.Now()
			f(b, rts[k])
			took[k] = append(took[k], ms(time.Since(t0)))
		}
	}
	for k, rt := range rts {
		m := median(took[k])
		record(prefix+name(rt), m)
		b.ReportMetric(m, fmt.Sprintf("%s-ms", name(rt)))
	}
}
