package integration

import (
	"fmt"
	"testing"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// nerdctlBenchRuntime is one runtime BenchmarkContainerd's nerdctl run
// times: its runtime type, and for the initos shim whether its config has
// VM templates on.
type nerdctlBenchRuntime struct {
	name, typ string
	templates bool
}

// Name is the runtime's name in the report's keys.
func (rt nerdctlBenchRuntime) Name() string { return rt.name }

// BenchmarkContainerd times, through one private containerd:
// `nerdctl run --rm IMG true` under runc, the initos shim, and the initos
// shim with VM templates (9p shares; its warm-up run builds the template),
// interleaved as BenchmarkPodman's are (each shim reads the config file at
// its start, so the file is switched before each run, untimed); and a
// container added to a running CRI pod (crictl create + start: a disk in
// the pod's VM, no boot) beside a pod sandbox of its own (a VM boot).
func BenchmarkContainerd(b *testing.B) {
	c := newContainerd(b)
	b.Run("nerdctl-run-rm-true", func(b *testing.B) {
		templates := func(b *testing.B, on bool) {
			c.editInitosConfig(b, func(cfg *runtime.Config) {
				cfg.ShareFS, cfg.Templates = env.cfg.ShareFS, false
				if on {
					cfg.ShareFS, cfg.Templates = vmm.Share9p, true
				}
			})
		}
		defer templates(b, false)
		run := func(b *testing.B, rt nerdctlBenchRuntime) {
			c.ok(b, "nerdctl", "run", "--rm", "--network", "none", "--runtime", rt.typ, containerdImage, "true")
		}
		tpl := nerdctlBenchRuntime{"initos-tpl", initosRuntimeType, true}
		// The shape's template, built before the timing.
		templates(b, true)
		run(b, tpl)
		b.ResetTimer()
		rts := []nerdctlBenchRuntime{{"runc", runcRuntimeType, false}, {"initos", initosRuntimeType, false}, tpl}
		interleaved(b, rts, nerdctlBenchRuntime.Name, "nerdctl.run.", func(b *testing.B, rt nerdctlBenchRuntime) {
			if rt.typ == initosRuntimeType {
				templates(b, rt.templates)
			}
		}, run)
	})
	b.Run("cri-sandbox", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pod := c.runPod(b, fmt.Sprintf("bench-sb-%d", i), initosHandler)
			b.StopTimer()
			c.ok(b, "crictl", "stopp", pod.id)
			c.ok(b, "crictl", "rmp", pod.id)
			b.StartTimer()
		}
	})
	b.Run("cri-pod-member", func(b *testing.B) {
		b.StopTimer()
		pod := c.runPod(b, "bench-members", initosHandler)
		b.StartTimer()
		for i := 0; i < b.N; i++ {
			id := c.startContainer(b, pod, fmt.Sprintf("m%d", i), "sleep", "3600")
			b.StopTimer()
			c.ok(b, "crictl", "rm", "-f", id)
			b.StartTimer()
		}
		b.StopTimer()
		c.ok(b, "crictl", "stopp", pod.id)
		c.ok(b, "crictl", "rmp", pod.id)
	})
}
