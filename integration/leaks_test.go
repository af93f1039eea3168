package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of TestStressLeaks (make stress; never part of a CI run).
const (
	leaksSeqEnv = "INITOS_LEAKS_SEQ" // sequential runs per engine (default 100)
	leaksParEnv = "INITOS_LEAKS_PAR" // parallel runs per engine (default 10)
)

// hostCounts counts what containers hold on the host, by kind.
type hostCounts map[string]int

// countHost counts the host resources a container may hold: VMMs,
// virtiofsd and monitors, taps, network namespaces, mounts, state dirs and
// sockets under roots, disk images, bridge leases.
func countHost(t *testing.T, roots ...string) hostCounts {
	t.Helper()
	c := hostCounts{}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		switch {
		case strings.Contains(args[0], "qemu-system"):
			c["vmm"]++
		case strings.HasSuffix(args[0], "virtiofsd"):
			c["virtiofsd"]++
		case strings.Contains(args[0], "initos-runtime") && len(args) > 1 && args[1] == "monitor":
			c["monitor"]++
		case strings.Contains(args[0], "containerd-shim-initos"):
			c["shim"]++
		case strings.HasSuffix(args[0], "conmon"):
			c["conmon"]++
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, "initos-tap") || strings.HasPrefix(i.Name, "tap") {
				c["tap"]++
			}
		}
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		c["netns"] = len(ents)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			// The guest RAM tmpfs: mounted by a foreground run in
			// the host's namespace and kept for the next boot there.
			if f := strings.Fields(l); len(f) > 4 && f[4] != env.cfg.RAMDir {
				c["mounts"]++
			}
		}
	}
	for _, root := range roots {
		ents, _ := os.ReadDir(root)
		c["state dirs"] += len(ents)
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type()&os.ModeSocket != 0 {
				c["sockets"]++
			}
			return nil
		})
	}
	for kind, dir := range map[string]string{"disk images": "disks", "leases": "leases"} {
		ents, _ := os.ReadDir(filepath.Join(env.cfg.DataDir, dir))
		c[kind] = len(ents)
	}
	return c
}

// diff lists the kinds whose counts differ, as "kind before→after".
func (c hostCounts) diff(after hostCounts) []string {
	kinds := map[string]bool{}
	for k := range c {
		kinds[k] = true
	}
	for k := range after {
		kinds[k] = true
	}
	var out []string
	for k := range kinds {
		if c[k] != after[k] {
			out = append(out, fmt.Sprintf("%s %d→%d", k, c[k], after[k]))
		}
	}
	sort.Strings(out)
	return out
}

// TestStressLeaks runs many short containers through podman, nerdctl and
// CRI (a pod each), one after the other and then several at a time, and counts what they
// hold on the host before and after (countHost): the counts must be equal.
// It takes minutes under TCG: make stress runs it.
func TestStressLeaks(t *testing.T) {
	if os.Getenv(stressEnv) != "1" {
		t.Skipf("set %s=1 to run (make stress)", stressEnv)
	}
	seq, par := envInt(t, leaksSeqEnv, 100), envInt(t, leaksParEnv, 10)
	for _, engine := range []struct {
		name string
		// setup prepares the engine and returns one `run --rm` of a
		// short container (safe to call from any goroutine), and the state
		// roots to count.
		setup func(t *testing.T) (run func(i int) error, roots []string)
	}{
		{"podman", func(t *testing.T) (func(int) error, []string) {
			p := newPodmanFor(t, "initos")
			return func(i int) error {
				r := p.run(t, nil, "run", "--rm", "--name", fmt.Sprintf("initos-leak-%d", i), podmanImage, "true")
				if r.code != 0 {
					return fmt.Errorf("podman run %d: exit %d: %s", i, r.code, r.stderr)
				}
				return nil
			}, []string{p.stateRoot}
		}},
		{"nerdctl", func(t *testing.T) (func(int) error, []string) {
			c := newContainerd(t)
			return func(i int) error {
				r, err := c.runErr(nil, "nerdctl", "run", "--rm", "--runtime", initosRuntimeType, containerdImage, "true")
				if err == nil && r.code != 0 {
					err = fmt.Errorf("nerdctl run %d: exit %d: %s", i, r.code, r.stderr)
				}
				return err
			}, nil
		}},
		{"cri", func(t *testing.T) (func(int) error, []string) {
			c := newContainerd(t)
			dir := t.TempDir()
			return func(i int) error { return criRunOnce(c, dir, i) }, nil
		}},
	} {
		t.Run(engine.name, func(t *testing.T) {
			run, roots := engine.setup(t)
			// The first run makes what stays (images unpacked, the bridge).
			if err := run(-1); err != nil {
				t.Fatal(err)
			}
			before := countHost(t, roots...)
			t0 := time.Now()
			for i := range seq {
				if err := run(i); err != nil {
					t.Fatal(err)
				}
			}
			tSeq := time.Since(t0)
			t0 = time.Now()
			var wg sync.WaitGroup
			errs := make([]error, par)
			for i := range par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = run(seq + i)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			tPar := time.Since(t0)
			// Teardown ends a moment after the engine returns.
			var after hostCounts
			poll(t, settleTimeout, "the host's counts to come back", func() (bool, string) {
				after = countHost(t, roots...)
				d := before.diff(after)
				return len(d) == 0, strings.Join(d, ", ")
			})
			t.Logf("%s: %d sequential runs in %s (%s each), %d parallel in %s; before and after: %v",
				engine.name, seq, tSeq.Round(time.Second), (tSeq / time.Duration(max(seq, 1))).Round(10*time.Millisecond),
				par, tPar.Round(time.Second), after)
		})
	}
}

// criRunOnce runs a pod of the initos handler with one short container
// through crictl, waits for the container's exit, and removes the pod, as
// kubelet does for a finished Job's pod. It is safe to call from any
// goroutine (its failures are errors, not test failures).
func criRunOnce(c *containerd, dir string, i int) error {
	crictl := func(args ...string) (string, error) {
		r, err := c.runErr(nil, "crictl", args...)
		if err == nil && r.code != 0 {
			err = fmt.Errorf("crictl %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return strings.TrimSpace(string(r.stdout)), err
	}
	name := fmt.Sprintf("leak-%d", i)
	podConfig, ctrConfig := filepath.Join(dir, name+"-pod.json"), filepath.Join(dir, name+"-ctr.json")
	logDir := filepath.Join(dir, name+"-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	for path, v := range map[string]any{
		podConfig: map[string]any{"metadata": map[string]any{"name": name, "namespace": "default", "uid": "uid-" + name},
			"log_directory": logDir},
		ctrConfig: map[string]any{"metadata": map[string]any{"name": "job"}, "image": map[string]any{"image": containerdImage},
			"command": []string{"true"}, "log_path": "job.log"},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	pod, err := crictl("runp", "--runtime", initosHandler, podConfig)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = crictl("stopp", pod)
		_, _ = crictl("rmp", pod)
	}()
	id, err := crictl("create", pod, ctrConfig, podConfig)
	if err != nil {
		return err
	}
	if _, err := crictl("start", id); err != nil {
		return err
	}
	deadline := time.Now().Add(settleTimeout)
	for {
		state, err := crictl("inspect", "--output", "go-template", "--template", "{{.status.state}}", id)
		if err != nil {
			return err
		}
		if state == "CONTAINER_EXITED" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s: container %s still %s after %s", name, id, state, settleTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := crictl("stopp", pod); err != nil {
		return err
	}
	_, err = crictl("rmp", pod)
	return err
}
