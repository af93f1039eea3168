package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCLIVerbs drives one detached container through the runc verbs that
// podman does not exercise: run -d, list, ps, events --stats, update,
// exec, and the lifecycle errors the spec requires.
func TestCLIVerbs(t *testing.T) {
	needVMs(t)
	t.Parallel()
	id := "cli-verbs"
	// A state root of its own: list must see this container only.
	root := t.TempDir()
	rt := func(stdin []byte, args ...string) result {
		return runtimeCmd(t, stdin, append([]string{"--root", root}, args...)...)
	}
	dir := writeBundle(t, busyboxSpec(t, "sh", "-c", "echo ready; exec sleep 3600"))
	defer func() {
		if _, err := os.Stat(filepath.Join(root, id)); err == nil {
			t.Errorf("state dir of %q left behind", id)
		}
		assertNothingLeft(t, id)
	}()
	defer rt(nil, "delete", "--force", id)
	// The monitor keeps the stdio it inherits (the container's): give it
	// files, not the pipes runtimeCmd would wait on.
	logPath := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(env.bin, "--config", env.config, "--root", root, "run", "--detach", "--bundle", dir, id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("run -d: %v: %s", err, b)
	}

	var states []struct{ ID, Status string }
	r := rt(nil, "list", "--format", "json")
	if err := json.Unmarshal(r.stdout, &states); err != nil {
		t.Fatalf("list -f json: %v: %s", err, r.stdout)
	}
	if len(states) != 1 || states[0].ID != id || states[0].Status != "running" {
		t.Fatalf("list: %+v", states)
	}

	// The state dir is root's only, and so is every socket in it (the
	// monitor's, the VMM's, virtiofsd's); and none of the container's
	// host processes listens on the network.
	checkStatePerms(t, filepath.Join(root, id))
	checkNoInetListeners(t, filepath.Join(root, id))

	// runtime.md "create": an id already in use MUST be an error.
	if r := rt(nil, "create", "--bundle", dir, id); r.code == 0 || !strings.Contains(string(r.stderr), "already exists") {
		t.Errorf("create of a used id: exit %d, %s", r.code, r.stderr)
	}
	// start of a container that is not created MUST be an error.
	if r := rt(nil, "start", id); r.code == 0 || !strings.Contains(string(r.stderr), "it is running") {
		t.Errorf("start of a running container: exit %d, %s", r.code, r.stderr)
	}
	// delete of a container that is not stopped MUST be an error.
	if r := rt(nil, "delete", id); r.code == 0 || !strings.Contains(string(r.stderr), "not stopped") {
		t.Errorf("delete of a running container: exit %d, %s", r.code, r.stderr)
	}

	r = rt(nil, "ps", "--format", "json", id)
	var pids []int
	if err := json.Unmarshal(r.stdout, &pids); err != nil || len(pids) == 0 {
		t.Errorf("ps -f json: %v %q", err, r.stdout)
	}
	// start returns once the exec is past its point of no return (the
	// helper's close-on-exec status pipe closed), as runc's does before its
	// exec: the kernel may not have named the new program yet. The ps
	// that follows at once can see the helper ("[exe]", no arguments) under
	// load; a later one sees sleep.
	for deadline := time.Now().Add(10 * time.Second); ; {
		r := rt(nil, "ps", id)
		if strings.Contains(string(r.stdout), "sleep 3600") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("ps lists no sleep: %s", r.stdout)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	r = rt(nil, "events", "--stats", id)
	var ev struct {
		Type string
		ID   string
		Data struct {
			CPU    struct{ Usage struct{ Total uint64 } }
			Memory struct {
				Usage struct{ Usage, Limit uint64 }
			}
			Pids struct{ Current uint64 }
		}
	}
	if err := json.Unmarshal(r.stdout, &ev); err != nil {
		t.Fatalf("events --stats: %v: %s %s", err, r.stdout, r.stderr)
	}
	if ev.Type != "stats" || ev.ID != id || ev.Data.CPU.Usage.Total == 0 || ev.Data.Memory.Usage.Usage == 0 ||
		ev.Data.Memory.Usage.Limit != 512<<20 || ev.Data.Pids.Current == 0 {
		t.Errorf("events --stats: %+v", ev)
	}

	if r := rt(nil, "update", "--memory", "1073741824", id); r.code == 0 || !strings.Contains(string(r.stderr), "memory limit above the VM's memory (512 MiB → 1024 MiB)") {
		t.Errorf("update --memory: exit %d, %s", r.code, r.stderr)
	}
	// Within the VM: the container's cgroup in the guest takes it live.
	if r := rt(nil, "update", "--memory", "268435456", "--pids-limit", "99", id); r.code != 0 {
		t.Errorf("update within the VM: exit %d, %s", r.code, r.stderr)
	}
	// The bundle mounts no cgroupfs: the check mounts the guest's (the
	// container is root in its VM).
	r = rt(nil, "exec", id, "sh", "-c", `mount -t cgroup2 none /sys/fs/cgroup && cg=$(sed -n 's/^0:://p' /proc/self/cgroup) && cat /sys/fs/cgroup$cg/memory.max /sys/fs/cgroup$cg/pids.max; umount /sys/fs/cgroup`)
	if r.code != 0 || string(r.stdout) != "268435456\n99\n" {
		t.Errorf("after update: exit %d, stdout %q, stderr %q; want memory.max 268435456 and pids.max 99", r.code, r.stdout, r.stderr)
	}

	r = rt([]byte("piped\n"), "exec", id, "sh", "-c", "cat; exit 9")
	if r.code != 9 || string(r.stdout) != "piped\n" {
		t.Errorf("exec: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	if r := rt(nil, "kill", id, "KILL"); r.code != 0 {
		t.Fatalf("kill: %s", r.stderr)
	}
	poll(t, env.runTimeout, "the container to stop", func() (bool, string) {
		r := rt(nil, "state", id)
		return strings.Contains(string(r.stdout), `"status": "stopped"`), string(r.stdout)
	})
	// kill of a stopped container MUST be an error.
	if r := rt(nil, "kill", id); r.code == 0 || !strings.Contains(string(r.stderr), "container not running") {
		t.Errorf("kill of a stopped container: exit %d, %s", r.code, r.stderr)
	}
	if r := rt(nil, "delete", id); r.code != 0 {
		t.Errorf("delete of a stopped container: exit %d, %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(logPath); string(b) != "ready\n" {
		t.Errorf("the container's output %q, want ready", b)
	}
}

// TestCLIDeleteCreated: delete of a created container without --force kills
// and removes it, as runc does (buildah deletes a failed RUN step's
// container that way); a running one still needs --force (TestCLIVerbs).
func TestCLIDeleteCreated(t *testing.T) {
	needVMs(t)
	t.Parallel()
	id := "cli-delete-created"
	dir := writeBundle(t, busyboxSpec(t, "true"))
	defer assertNothingLeft(t, id)
	defer runtimeCmd(t, nil, "delete", "--force", id)
	createContainer(t, dir, id)
	if r := runtimeCmd(t, nil, "state", id); !strings.Contains(string(r.stdout), `"status": "created"`) {
		t.Fatalf("state after create: %s %s", r.stdout, r.stderr)
	}
	if r := runtimeCmd(t, nil, "delete", id); r.code != 0 {
		t.Fatalf("delete of a created container: exit %d, %s", r.code, r.stderr)
	}
	if r := runtimeCmd(t, nil, "state", id); r.code == 0 || !strings.Contains(string(r.stderr), "does not exist") {
		t.Errorf("state after delete: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
}

// createContainer runs `initos-runtime create` of bundle dir as id and
// fails t if it fails. The monitor keeps the stdio it inherits: files,
// not pipes (a pipe would keep the create's reader waiting).
func createContainer(t *testing.T, dir, id string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(env.bin, "--config", env.config, "create", "--bundle", dir, id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("create: %v: %s", err, b)
	}
}

// TestCLICreateKilled: create killed (SIGKILL) at some point of its work
// (before the monitor starts, while the VM boots, before it returns) leaves
// a container that state reports and that delete --force removes whole: no
// monitor, VMM or virtiofsd, no state, no disk image. The points are times
// after create started, as the steps take under TCG.
func TestCLICreateKilled(t *testing.T) {
	needVMs(t)
	t.Parallel()
	dir := writeBundle(t, busyboxSpec(t, "sleep", "3600"))
	for _, after := range []time.Duration{0, 300 * time.Millisecond, time.Second, 2500 * time.Millisecond} {
		id := fmt.Sprintf("cli-create-killed-%d", after.Milliseconds())
		t.Run(after.String(), func(t *testing.T) {
			t.Parallel()
			defer assertNothingLeft(t, id)
			cmd := exec.Command(env.bin, "--config", env.config, "create", "--bundle", dir, id)
			// The monitor inherits stdio: files, not pipes.
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(after)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			r := runtimeCmd(t, nil, "state", id)
			t.Logf("state after create was killed: exit %d, %s%s", r.code, bytes.TrimSpace(r.stdout), bytes.TrimSpace(r.stderr))
			if r := runtimeCmd(t, nil, "delete", "--force", id); r.code != 0 && !strings.Contains(string(r.stderr), "does not exist") {
				t.Errorf("delete --force: exit %d, %s", r.code, r.stderr)
			}
		})
	}
}

// checkStatePerms checks a running container's state dir: mode 0700, and
// each socket in it 0600 (none may be missing: the monitor's at least).
func checkStatePerms(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir %s has mode %v, want 0700", dir, fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var socks []string
	for _, e := range entries {
		if e.Type()&fs.ModeSocket == 0 {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, e.Name())
		if info.Mode().Perm() != 0o600 {
			t.Errorf("socket %s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if !slices.Contains(socks, "monitor.sock") {
		t.Errorf("no monitor.sock among the sockets %v of %s", socks, dir)
	}
	t.Logf("state dir 0700; sockets 0600: %v", socks)
}

// checkNoInetListeners fails when a host process of the container whose
// state dir is dir (its VMM and virtiofsd name it; the monitor holds it
// open) has a listening TCP socket or a bound UDP socket, in whatever
// network namespace it runs: the host serves the guest nothing over the
// network.
func checkNoInetListeners(t *testing.T, dir string) {
	t.Helper()
	procs := processesOf(dir, dir)
	if len(procs) == 0 {
		t.Fatalf("no process of %s found", dir)
	}
	for _, proc := range procs {
		var pid int
		fmt.Sscanf(proc, "%d", &pid)
		listening := map[string]string{} // socket inode → the line's protocol
		for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				f := strings.Fields(line)
				// sl local rem st ... uid timeout inode: TCP LISTEN is 0A;
				// every UDP socket is bound to receive.
				if len(f) > 9 && (strings.HasPrefix(proto, "udp") || f[3] == "0A") {
					listening[f[9]] = proto + " " + f[1]
				}
			}
		}
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			target, err := os.Readlink(fd)
			if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
				if l, ok := listening[strings.TrimSuffix(inode, "]")]; ok {
					t.Errorf("%s listens on %s", proc, l)
				}
			}
		}
	}
	t.Logf("no inet listener among %d processes", len(procs))
}
