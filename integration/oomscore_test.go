package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// hostOOMScores are the oom_score_adj values of the host processes that
// hold a container's memory: under runc, the process pid the engine
// reports; under initos-runtime, the VMM and virtiofsd processes among
// pid's descendants (pid is its monitor) or, with pid 0, among every
// process whose command line names dir (the shim's VM). Each is keyed by
// "pid (command)"; no VMM among them fails the test.
func hostOOMScores(t testing.TB, pid int, initos bool, dir string) map[string]int {
	t.Helper()
	var pids []int
	switch {
	case !initos:
		pids = []int{pid}
	case pid != 0:
		pids = descendants(pid)
	default:
		for _, p := range processesOf(dir, "") {
			if n, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
				pids = append(pids, n)
			}
		}
	}
	scores := map[string]int{}
	vmms := 0
	for _, p := range pids {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err != nil {
			continue // gone
		}
		args := strings.Split(strings.TrimSuffix(string(cmd), "\x00"), "\x00")
		vmm := strings.Contains(args[0], "qemu-system") || strings.Contains(args[0], "cloud-hypervisor")
		if initos && !vmm && !strings.HasSuffix(args[0], "virtiofsd") {
			continue
		}
		if vmm {
			vmms++
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", p))
		if err != nil {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("/proc/%d/oom_score_adj: %q", p, b)
		}
		scores[fmt.Sprintf("%d (%s)", p, filepath.Base(args[0]))] = v
	}
	if initos && vmms == 0 {
		t.Fatalf("no VMM among the processes %v", pids)
	}
	if len(scores) == 0 {
		t.Fatalf("none of the processes %v is there", pids)
	}
	return scores
}

// descendants are pid's child processes, theirs, and so on.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(f); err == nil {
				out = append(out, child)
				out = append(out, descendants(child)...)
			}
		}
	}
	return out
}

// allEqual fails the test unless every value of scores is want.
func allEqual(t testing.TB, what string, scores map[string]int, want int) {
	t.Helper()
	for p, v := range scores {
		if v != want {
			t.Errorf("%s: %s has oom_score_adj %d, want %d (all: %v)", what, p, v, want, scores)
			return
		}
	}
}

// testPodmanOOMScoreAdj: --oom-score-adj weighs the container for the OOM
// killers as under runc: its process, in its VM, for the guest's; its VMM
// and virtiofsd for the host's (runc's: the container's process).
func testPodmanOOMScoreAdj(t *testing.T, p *podman) {
	const name = "initos-pm-oom"
	p.removeLater(t, name)
	p.ok(t, "run", "-d", "--name", name, "--network", "none", "--oom-score-adj", "700", podmanImage, "sleep", "3600")
	pid, err := strconv.Atoi(p.inspect(t, name, "{{.State.Pid}}"))
	if err != nil {
		t.Fatal(err)
	}
	allEqual(t, "on the host", hostOOMScores(t, pid, p.initos, ""), 700)
	if got := strings.TrimSpace(p.ok(t, "exec", name, "cat", "/proc/1/oom_score_adj")); got != "700" {
		t.Errorf("the container's process has oom_score_adj %s, want 700", got)
	}
	p.ok(t, "rm", "--force", "--time", "0", name)
}
