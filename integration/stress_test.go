package integration

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of TestStressBoot (make stress; never part of a CI run).
const (
	stressEnv    = "INITOS_STRESS"     // 1: run it
	stressNEnv   = "INITOS_STRESS_N"   // VMs in all (default 60)
	stressParEnv = "INITOS_STRESS_PAR" // VMs at a time (default 6)
)

// TestStressBoot boots many VMs, several at a time, through `initos-runtime
// run` of the busybox bundle: every boot must reach the agent (a boot that
// never does is a defect, whatever the load), and the boot-time
// distribution is printed.
func TestStressBoot(t *testing.T) {
	if os.Getenv(stressEnv) != "1" {
		t.Skipf("set %s=1 to run (make stress)", stressEnv)
	}
	needVMs(t)
	n, par := envInt(t, stressNEnv, 60), envInt(t, stressParEnv, 6)
	dir := writeBundle(t, busyboxSpec(t, "true"))
	var (
		mu       sync.Mutex
		boots    []time.Duration
		failures []string
		reboots  int // boots retried after a stall (runtime.bootStalls)
	)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("stress-%d", i)
			r := runtimeCmd(t, nil, "run", "--timings", "--bundle", dir, id)
			boot, ok := phase(string(r.stderr), "boot")
			mu.Lock()
			defer mu.Unlock()
			if r.code != 0 || !ok {
				failures = append(failures, fmt.Sprintf("%s: exit %d:\n%s", id, r.code, r.stderr))
				return
			}
			boots = append(boots, boot)
			if m := bootsRe.FindStringSubmatch(string(r.stderr)); m != nil {
				n, _ := strconv.Atoi(m[1])
				reboots += n - 1
			}
		}()
	}
	wg.Wait()
	sort.Slice(boots, func(i, j int) bool { return boots[i] < boots[j] })
	t.Logf("%d VMs, %d at a time, in %s: %d booted, %d failed; %d boots stalled and were retried",
		n, par, time.Since(t0).Round(time.Second), len(boots), len(failures), reboots)
	if len(boots) > 0 {
		q := func(p float64) time.Duration { return boots[int(p*float64(len(boots)-1))].Round(time.Millisecond) }
		t.Logf("boot (VMM start to agent ready): min %s p50 %s p90 %s p99 %s max %s", q(0), q(0.5), q(0.9), q(0.99), q(1))
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// bootsRe is run --timings' count of boots.
var bootsRe = regexp.MustCompile(`\bboots=([0-9]+)`)

// phase is one phase's time from run --timings output.
func phase(out, name string) (time.Duration, bool) {
	for _, m := range timingsRe.FindAllStringSubmatch(out, -1) {
		if m[1] != name {
			continue
		}
		d, err := time.ParseDuration(strings.Replace(m[2], "µ", "u", 1))
		return d, err == nil
	}
	return 0, false
}

func envInt(t testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}
