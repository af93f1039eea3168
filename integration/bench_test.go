package integration

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var timingsRe = regexp.MustCompile(`(\w+)=([0-9.]+(?:ns|µs|us|ms|s|m[0-9.]*s?)+)`)

// BenchmarkRunBusybox times `initos-runtime run` of the busybox bundle
// phase by phase (disk build, initrd (cached), VMM start → agent ready,
// guest setup, process run, teardown), and `runc run` of the same bundle in
// the same run.
func BenchmarkRunBusybox(b *testing.B) {
	needVMs(b)
	s := busyboxSpec(b, "true")
	withEngineCaps(s) // runc runs it too
	dir := writeBundle(b, s)
	b.Run("initos-runtime", func(b *testing.B) {
		sums := map[string]time.Duration{}
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("bench-%d", i)
			r := runtimeCmd(b, nil, "run", "--timings", "--bundle", dir, id)
			if r.code != 0 {
				b.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			for _, m := range timingsRe.FindAllStringSubmatch(string(r.stderr), -1) {
				d, err := time.ParseDuration(strings.Replace(m[2], "µ", "u", 1))
				if err != nil {
					continue
				}
				sums[m[1]] += d
			}
		}
		for _, phase := range []string{"disk", "initrd", "boot", "setup", "run", "teardown"} {
			b.ReportMetric(float64(sums[phase].Milliseconds())/float64(b.N), phase+"-ms/op")
		}
	})
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
	})
}
