package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cleanup removes what the tests left in this containerd, stops it and
// checks that nothing of it outlives the test: processes, shim sockets,
// mounts, the initos runtime's state; then it removes dir and the bridges.
func (c *containerd) cleanup(t testing.TB) {
	t.Helper()
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.exited:
			if c.ready {
				t.Errorf("containerd exited before the end of the test (%v); its log ends:\n%s", c.cmd.ProcessState, c.logTail(40))
			}
		default:
			// One that never answered would hold up every command.
			if c.ready {
				c.removeAll(t)
			}
			if t.Failed() {
				t.Logf("containerd's log ends:\n%s", c.logTail(60))
			}
			c.stop(t)
		}
	}
	c.keepLog(t)

	// The shims (and the VMMs of the initos runtime) hold files under dir
	// or name it (the shims get containerd's address).
	deadline := time.Now().Add(settleTimeout)
	left := processesOf(c.dir, c.dir)
	for len(left) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		left = processesOf(c.dir, c.dir)
	}
	if len(left) > 0 {
		t.Errorf("processes of the private containerd in %s left %s after it stopped (killing them): %s", c.dir, settleTimeout, strings.Join(left, "; "))
		for _, p := range left {
			// processesOf describes each as "PID (COMMAND LINE)...".
			if pid, err := strconv.Atoi(strings.SplitN(p, " ", 2)[0]); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}

	// A shim that crashed leaves its socket in /run/containerd/s (the shims'
	// fixed directory, shared with any other containerd).
	for _, sock := range c.shimSockets() {
		if _, err := os.Lstat(sock); err == nil {
			t.Errorf("shim socket %s left behind (a shim that did not clean up: crashed or killed?)", sock)
			os.Remove(sock)
		}
	}
	// Unmounted, so that the directory can go.
	if mounts, err := detachMountsUnder(c.dir); err != nil {
		t.Errorf("mounts left under %s: %s: %v", c.dir, strings.Join(mounts, ", "), err)
	} else if len(mounts) > 0 {
		t.Errorf("mounts left under %s: %s", c.dir, strings.Join(mounts, ", "))
	}
	for _, root := range []string{c.initosRoot, c.initosRoot + "-shim"} {
		if entries, err := os.ReadDir(root); err == nil && len(entries) > 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("state of the initos runtime left in %s: %s", root, strings.Join(names, ", "))
		}
	}
	// CNI's bridge plugin never removes its bridge.
	for _, br := range []string{c.criBridge, c.nerdctlBridge} {
		if br != "" && linkExists(br) {
			if b, err := exec.Command("ip", "link", "delete", br).CombinedOutput(); err != nil {
				t.Errorf("deleting bridge %s: %v: %s", br, err, b)
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("removing the private containerd's directory: %v", err)
	}
}

// removeAll removes every pod (CRI), nerdctl container and then any other
// container and task of every namespace. Failures are errors of t, and the
// cleanup goes on.
func (c *containerd) removeAll(t testing.TB) {
	t.Helper()
	// try runs a command of the cleanup; it returns its stdout's fields, or
	// nil after an error of t.
	try := func(tool string, args ...string) []string {
		t.Helper()
		r, err := c.runErr(nil, tool, args...)
		if err == nil && r.code != 0 {
			err = fmt.Errorf("%s %s: exit %d: %s", tool, strings.Join(args, " "), r.code, bytes.TrimSpace(r.stderr))
		}
		if err != nil {
			t.Errorf("cleaning up the private containerd: %v", err)
			return nil
		}
		return strings.Fields(string(r.stdout))
	}
	if len(try("crictl", "pods", "--quiet")) > 0 {
		try("crictl", "rmp", "--all", "--force")
	}
	// nerdctl's own removal runs its OCI hooks (CNI teardown) and clears
	// its data root.
	if ids := try("nerdctl", "ps", "--all", "--quiet", "--no-trunc"); len(ids) > 0 {
		try("nerdctl", append([]string{"rm", "--force"}, ids...)...)
	}
	for _, ns := range try("ctr", "namespaces", "ls", "--quiet") {
		for _, id := range try("ctr", "--namespace", ns, "tasks", "ls", "--quiet") {
			try("ctr", "--namespace", ns, "tasks", "delete", "--force", id)
		}
		if ids := try("ctr", "--namespace", ns, "containers", "ls", "--quiet"); len(ids) > 0 {
			try("ctr", append([]string{"--namespace", ns, "containers", "delete"}, ids...)...)
		}
	}
}

// stop ends containerd: SIGTERM, then SIGKILL after containerdStopTimeout.
func (c *containerd) stop(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM to containerd (pid %d): %v", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.exited:
		return
	case <-time.After(containerdStopTimeout):
	}
	t.Errorf("containerd (pid %d) did not end within %s of SIGTERM: killing it; its log ends:\n%s", c.cmd.Process.Pid, containerdStopTimeout, c.logTail(40))
	c.cmd.Process.Kill()
	select {
	case <-c.exited:
	case <-time.After(containerdStopTimeout):
		t.Errorf("containerd (pid %d) did not end within %s of SIGKILL", c.cmd.Process.Pid, containerdStopTimeout)
	}
}

// shimSocketRE finds the shims' sockets in containerd's log (at level info
// and below: INITOS_CONTAINERD_LOG_LEVEL=warn loses the check).
var shimSocketRE = regexp.MustCompile(`msg="connecting to shim [^"]*" address="unix://([^"]+)"`)

// shimSockets lists the sockets of the shims containerd connected to.
func (c *containerd) shimSockets() []string {
	b, _ := os.ReadFile(c.log)
	var socks []string
	seen := map[string]bool{}
	for _, m := range shimSocketRE.FindAllSubmatch(b, -1) {
		if s := string(m[1]); !seen[s] {
			seen[s] = true
			socks = append(socks, s)
		}
	}
	return socks
}

// keepLog copies containerd's whole log (with the shims' logs) to
// $INITOS_CONTAINERD_LOG_DIR/<test name>.log when that is set.
func (c *containerd) keepLog(t testing.TB) {
	t.Helper()
	dir := os.Getenv("INITOS_CONTAINERD_LOG_DIR")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(c.log)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".log")
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Errorf("keeping containerd's log (INITOS_CONTAINERD_LOG_DIR): %v", err)
		return
	}
	t.Logf("containerd's log: %s", path)
}

// assertGone checks that container id left nothing of the initos runtime
// behind: no process names it, no state under initosRoot and no disk image
// in the data dir bear its name.
func (c *containerd) assertGone(t testing.TB, id string) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(settleTimeout)
	for {
		left = processesOf(id, "")
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("processes of container %s left %s after its removal: %s", id, settleTimeout, strings.Join(left, "; "))
	}
	// The shim keeps a container's VM state in <root>-shim/<name>, name a
	// hash of namespace and id (shim.stateDirName); disk images are named
	// after it, or after the id for a pod's member.
	var names []string
	for _, ns := range []string{nerdctlNamespace, criNamespace} {
		dir := c.shimStateDir(ns, id)
		names = append(names, filepath.Base(dir))
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("state of container %s left behind: %s", id, dir)
		}
	}
	for _, name := range append(names, id) {
		if disks, _ := filepath.Glob(filepath.Join(env.cfg.DataDir, "disks", name+"-*")); len(disks) > 0 {
			t.Errorf("disk images of container %s left behind: %s", id, strings.Join(disks, ", "))
		}
	}
}

// shimStateDir is where the shim keeps the VM state of container id of
// namespace ns: <root>-shim/c<hash> (shim.stateDirName).
func (c *containerd) shimStateDir(ns, id string) string {
	h := sha256.Sum256([]byte(ns + "/" + id))
	return filepath.Join(c.initosRoot+"-shim", "c"+hex.EncodeToString(h[:8]))
}

// strayShims lists this containerd's shims in the CRI namespace whose id
// is neither a sandbox nor a container that CRI knows.
func (c *containerd) strayShims(t testing.TB) []string {
	t.Helper()
	known := map[string]bool{}
	for _, args := range [][]string{{"pods", "-q"}, {"ps", "-a", "-q"}} {
		r := c.crictl(t, args...)
		for _, id := range strings.Fields(string(r.stdout)) {
			known[id] = true
		}
	}
	var stray []string
	for _, line := range processesOf("containerd-shim-initos-v2", "") {
		f := strings.Fields(strings.TrimSuffix(line, ")"))
		if !strings.Contains(line, " -namespace "+criNamespace+" ") || !strings.Contains(line, c.address) {
			continue
		}
		for i := range f[:len(f)-1] {
			if f[i] == "-id" && !knownPrefix(known, f[i+1]) {
				stray = append(stray, line)
			}
		}
	}
	return stray
}

// knownPrefix reports whether id is known, or the prefix of a known id or
// one's extension (should crictl ever shorten what -q prints).
func knownPrefix(known map[string]bool, id string) bool {
	for k := range known {
		if strings.HasPrefix(k, id) || strings.HasPrefix(id, k) {
			return true
		}
	}
	return false
}
