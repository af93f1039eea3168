package integration

import (
	"fmt"
	"testing"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// BenchmarkContainerd times, through one private containerd:
// `nerdctl run --rm IMG true` under runc and under the initos shim, and a
// container added to a running CRI pod (crictl create + start: a disk in
// the pod's VM, no boot) beside a pod sandbox of its own (a VM boot).
func BenchmarkContainerd(b *testing.B) {
	c := newContainerd(b)
	for _, rt := range []string{runcRuntimeType, initosRuntimeType} {
		b.Run("nerdctl-run-rm-true/"+rt, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.ok(b, "nerdctl", "run", "--rm", "--network", "none", "--runtime", rt, containerdImage, "true")
			}
			name := "initos"
			if rt == runcRuntimeType {
				name = "runc"
			}
			record("nerdctl.run."+name, ms(b.Elapsed())/float64(b.N))
		})
	}
	b.Run("nerdctl-run-rm-true/initos-templates", func(b *testing.B) {
		c.editInitosConfig(b, func(cfg *runtime.Config) { cfg.ShareFS, cfg.Templates = vmm.Share9p, true })
		defer c.editInitosConfig(b, func(cfg *runtime.Config) { cfg.ShareFS, cfg.Templates = env.cfg.ShareFS, false })
		// The shape's template, built before the timing.
		c.ok(b, "nerdctl", "run", "--rm", "--network", "none", "--runtime", initosRuntimeType, containerdImage, "true")
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.ok(b, "nerdctl", "run", "--rm", "--network", "none", "--runtime", initosRuntimeType, containerdImage, "true")
		}
		record("nerdctl.run.initos-tpl", ms(b.Elapsed())/float64(b.N))
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
