package integration

import (
	"fmt"
	"os/exec"
	"testing"
)

// BenchmarkPodman times `podman run --rm IMG true` and `podman exec C true`
// under runc, crun (where it runs: Debian's crun 1.8 fails under podman on
// these hosts, and is skipped then), initos-runtime, and initos-runtime
// with VM templates (9p shares; its warm-up run builds the template), in
// one run.
func BenchmarkPodman(b *testing.B) {
	needVMs(b)
	for _, rt := range []string{"runc", "crun", "initos", "initos-tpl"} {
		b.Run(rt, func(b *testing.B) {
			var p *podman
			switch rt {
			case "initos":
				p = newPodmanFor(b, rt)
			case "initos-tpl":
				p = newPodmanWithConfig(b, templatesConfig(b))
			default:
				if _, err := exec.LookPath(rt); err != nil {
					b.Skipf("%s not installed", rt)
				}
				p = newPodmanFor(b, rt)
			}
			if r := p.run(b, nil, "run", "--rm", "--network", "none", podmanImage, "true"); r.code != 0 {
				if rt == "initos" || rt == "initos-tpl" {
					b.Fatalf("initos-runtime under podman: exit %d: %s", r.code, r.stderr)
				}
				b.Skipf("%s does not run under podman here: exit %d: %s", rt, r.code, r.stderr)
			}
			b.Run("run-rm-true", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					p.ok(b, "run", "--rm", "--network", "none", podmanImage, "true")
				}
				record("podman.run."+rt, ms(b.Elapsed())/float64(b.N))
			})
			b.Run("exec-true", func(b *testing.B) {
				name := fmt.Sprintf("bench-exec-%s", rt)
				p.detached(b, name, "sleep", "3600")
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					p.ok(b, "exec", name, "true")
				}
				b.StopTimer()
				record("podman.exec."+rt, ms(b.Elapsed())/float64(b.N))
				p.ok(b, "rm", "-f", "-t", "0", name)
			})
		})
	}
}
