package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPodman drives Debian's podman and conmon with the runtime under test
// (initos-runtime; INITOS_PODMAN_RUNTIME=runc runs the same checks against
// runc) on a busybox image imported into an isolated store. Each subtest has
// its own containers and runs in parallel with the others; with
// initos-runtime every container is a VM, so checks that need a running
// container share one where that stays readable.
func TestPodman(t *testing.T) {
	p := newPodman(t)
	t.Run("run-rm", func(t *testing.T) { t.Parallel(); testPodmanRunRm(t, p) })
	t.Run("exit-status", func(t *testing.T) { t.Parallel(); testPodmanExitStatus(t, p) })
	t.Run("kill-and-stop", func(t *testing.T) { t.Parallel(); testPodmanKillAndStop(t, p) })
	t.Run("stop-timeout", func(t *testing.T) { t.Parallel(); testPodmanStopTimeout(t, p) })
	t.Run("detached-logs-wait", func(t *testing.T) { t.Parallel(); testPodmanDetached(t, p) })
	t.Run("run-it", func(t *testing.T) { t.Parallel(); testPodmanRunTerminal(t, p) })
	t.Run("lifecycle", func(t *testing.T) { t.Parallel(); testPodmanLifecycle(t, p) })
	t.Run("restart-logs", func(t *testing.T) { t.Parallel(); testPodmanRestartLogs(t, p) })
	t.Run("block-io", func(t *testing.T) { t.Parallel(); testPodmanBlockIO(t, p) })
	t.Run("preserve-fds", func(t *testing.T) { t.Parallel(); testPodmanPreserveFds(t, p) })
	t.Run("cgroup-limits", func(t *testing.T) { t.Parallel(); testPodmanCgroupLimits(t, p) })
	t.Run("masked-paths", func(t *testing.T) { t.Parallel(); testPodmanMaskedPaths(t, p) })
	t.Run("proc-mounts", func(t *testing.T) { t.Parallel(); testPodmanProcMounts(t, p) })
	t.Run("privileged-dev", func(t *testing.T) { t.Parallel(); testPodmanPrivilegedDev(t, p) })
	t.Run("seccomp-sockets", func(t *testing.T) { t.Parallel(); testPodmanSeccompSockets(t, p) })
	t.Run("oom-score-adj", func(t *testing.T) { t.Parallel(); testPodmanOOMScoreAdj(t, p) })
	t.Run("clock-step", func(t *testing.T) { t.Parallel(); testPodmanClockStep(t, p) })
	if p.initos {
		t.Run("faults", func(t *testing.T) { t.Parallel(); testPodmanFaults(t, p) })
	}
}

// podmanFaults are faults of a running container's host processes, each
// a SIGKILL: kill does it (it may skip the test); the container must then
// exit 137, as a runc container whose process was killed, with the log
// lines in wantLog (podman deletes the runtime's container, its state dir
// and the monitor's log, once it exits: the container's log keeps them),
// and `podman rm` must leave nothing.
var podmanFaults = []struct {
	name    string
	kill    func(t *testing.T, p *podman, name, dir string)
	wantLog []string
}{
	// The VMM: the container's processes die with it; the monitor's log
	// says how the VM ended.
	{name: "vmm-killed", kill: func(t *testing.T, _ *podman, _, dir string) { killVMM(t, dir) },
		wantLog: []string{"its VM ended under it (the VMM (qemu) ended: ", "signal: killed"}},
	// The monitor (the pid conmon waits for) is PID 1 of its PID namespace:
	// its VM and virtiofsd end with it, and `podman rm` runs the runtime's
	// delete of a container whose monitor is gone.
	{name: "monitor-killed", kill: func(t *testing.T, p *podman, name, dir string) {
		pid, err := strconv.Atoi(p.inspect(t, name, "{{.State.Pid}}"))
		if err != nil || pid <= 1 {
			t.Fatalf("the container's pid %d: %v", pid, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("killing the monitor (pid %d): %v", pid, err)
		}
		poll(t, settleTimeout, "the VMM and virtiofsd of "+dir+" to end with the monitor", func() (bool, string) {
			left := processesOf(dir, "")
			return len(left) == 0, strings.Join(left, "; ")
		})
	}},
	// The virtiofsd serving the container's root: its files are gone from
	// under the guest, so the VM is stopped and the log says which
	// virtiofsd ended. (Skipped where the root is shared over 9p.)
	{name: "virtiofsd-killed", kill: func(t *testing.T, p *podman, name, dir string) {
		if !killVirtiofsd(t, dir) {
			p.ok(t, "rm", "--force", "--time", "0", name)
			t.Skipf("no virtiofsd serves %s (the root is shared over 9p here)", dir)
		}
	}, wantLog: []string{`virtiofsd of share "initos-root"`, "so the VMM was stopped"}},
}

// testPodmanFaults runs podmanFaults, each on a container of its own.
func testPodmanFaults(t *testing.T, p *podman) {
	for _, f := range podmanFaults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			name := "initos-pm-" + f.name
			id := p.detached(t, name, "sh", "-c", "echo ready; exec sleep 3600")
			p.waitLogs(t, name, "ready", settleTimeout)
			f.kill(t, p, name, p.stateDir(id))
			if got := p.ok(t, "wait", name); got != "137" {
				t.Errorf("podman wait printed %q after the fault, want 137", got)
			}
			if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 137" {
				t.Errorf("state %q after the fault, want exited 137", got)
			}
			if _, stderr := p.logs(t, name); !containsAll(stderr, f.wantLog) {
				t.Errorf("podman logs' stderr %q does not say %q", stderr, f.wantLog)
			}
			p.ok(t, "rm", name)
			p.assertRemoved(t, id)
		})
	}
}

// containsAll reports whether s holds each of subs.
func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// testPodmanRunRm: `podman run --rm` keeps stdout and stderr apart, exits 0
// and leaves nothing behind.
func testPodmanRunRm(t *testing.T, p *podman) {
	name := "initos-pm-run-rm"
	p.removeLater(t, name)
	cidfile := filepath.Join(t.TempDir(), "cid")
	r := p.run(t, nil, "run", "--rm", "--cidfile", cidfile, "--name", name, "--network", "none", podmanImage,
		"sh", "-c", "echo hello from podman; echo to-stderr >&2")
	if r.code != 0 || string(r.stdout) != "hello from podman\n" || string(r.stderr) != "to-stderr\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0, %q, %q", r.code, r.stdout, r.stderr, "hello from podman\n", "to-stderr\n")
	}
	id, err := os.ReadFile(cidfile)
	if err != nil {
		t.Fatal(err)
	}
	p.assertRemoved(t, strings.TrimSpace(string(id)))
}

// testPodmanSeccompSockets: under podman's default seccomp profile a
// container makes sockets (its rules on socket(2) have conditions; a rule
// after one with conditions once compared an argument with the system
// call number, and every socket got ENOSYS), and the netlink audit socket
// the profile refuses gets its EINVAL.
func testPodmanSeccompSockets(t *testing.T, p *podman) {
	out := p.ok(t, "run", "--rm", "--network", "none", podmanImage, "sh", "-c",
		`nc -l -p 7000 > /tmp/got & sleep 1; echo hello | nc 127.0.0.1 7000; sleep 0.5; cat /tmp/got`)
	if out != "hello" {
		t.Errorf("a TCP round trip on loopback under the default seccomp profile gave %q, want hello", out)
	}
}

// testPodmanMaskedPaths: podman's masked paths read as empty and its
// read-only paths refuse writes, as under runc.
func testPodmanMaskedPaths(t *testing.T, p *podman) {
	script := `echo kcore $(cat /proc/kcore | wc -c); echo firmware $(ls /sys/firmware | wc -l); ` +
		`if echo x > /proc/sys/kernel/domainname 2>/dev/null; then echo sys-writable; else echo sys-read-only; fi`
	r := p.run(t, nil, "run", "--rm", "--network", "none", podmanImage, "sh", "-c", script)
	if want := "kcore 0\nfirmware 0\nsys-read-only\n"; r.code != 0 || string(r.stdout) != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
}

// testPodmanProcMounts: a volume on a file under /proc (lxcfs's way to
// give a container a /proc/meminfo of its own) is what the container reads
// there, as under runc, and the paths masked under /proc stay masked.
func testPodmanProcMounts(t *testing.T, p *podman) {
	f := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(f, []byte("MemTotal: 42 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := p.run(t, nil, "run", "--rm", "--network", "none", "-v", f+":/proc/meminfo:ro", podmanImage,
		"sh", "-c", "cat /proc/meminfo; echo kcore $(cat /proc/kcore | wc -c)")
	if want := "MemTotal: 42 kB\nkcore 0\n"; r.code != 0 || string(r.stdout) != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
}

// testPodmanPrivilegedDev: a privileged container's /dev holds the
// kernel's devices as runc gives them (under initos-runtime the guest
// kernel's: its virtual consoles and kmsg), an unprivileged one only the
// default set.
func testPodmanPrivilegedDev(t *testing.T, p *podman) {
	devs := func(args ...string) map[string]bool {
		t.Helper()
		r := p.run(t, nil, append(append([]string{"run", "--rm", "--network", "none"}, args...), podmanImage, "ls", "/dev")...)
		if r.code != 0 {
			t.Fatalf("ls /dev with %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
		set := map[string]bool{}
		for _, f := range strings.Fields(string(r.stdout)) {
			set[f] = true
		}
		return set
	}
	priv := devs("--privileged")
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx", "tty0", "tty1", "tty63", "kmsg"} {
		if !priv[d] {
			t.Errorf("--privileged: /dev/%s is missing", d)
		}
	}
	plain := devs()
	for _, d := range []string{"tty0", "kmsg"} {
		if plain[d] {
			t.Errorf("without --privileged: /dev/%s is there", d)
		}
	}
}

// testPodmanCgroupLimits: the spec's pids and CPU limits hold for the
// container's processes (their cgroup; in the guest under initos).
func testPodmanCgroupLimits(t *testing.T, p *podman) {
	// The container's cgroup is its /sys/fs/cgroup (cgroup v2: runc binds
	// it there without a cgroup namespace, and so does the agent; under runc
	// on a cgroup v1 host the files are elsewhere and the test skips).
	script := `cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max`
	r := p.run(t, nil, "run", "--rm", "--pids-limit", "77", "--cpu-quota", "50000", "--cpu-period", "100000", podmanImage, "sh", "-c", script)
	if !p.initos && r.code != 0 {
		t.Skipf("cgroup v2 files not readable under %s: %s", p.runtime, r.stderr)
	}
	if r.code != 0 || string(r.stdout) != "77\n50000 100000\n" {
		t.Errorf("pids.max and cpu.max: exit %d, stdout %q, stderr %q; want 77 and \"50000 100000\"", r.code, r.stdout, r.stderr)
	}
}

// testPodmanExitStatus: podman run's status is the container process's.
func testPodmanExitStatus(t *testing.T, p *podman) {
	type tc struct {
		name       string
		flags      []string // podman run's, before the image
		args       []string
		wantStatus int
		wantOut    string
		wantErr    string // a substring of stderr
	}
	cases := []tc{
		{name: "exit-3", args: []string{"sh", "-c", "echo bye; exit 3"}, wantStatus: 3, wantOut: "bye\n"},
		// The container's process is PID 1 of its own PID namespace (runc's
		// and ours): the kernel drops a SIGKILL sent to it from inside.
		{name: "sigkill-self", args: []string{"sh", "-c", "kill -9 $$; echo survived"}, wantStatus: 0, wantOut: "survived\n"},
		// A process that is not PID 1 dies of it.
		{name: "sigkill-child", args: []string{"sh", "-c", "sh -c 'kill -9 $$'; echo $?"}, wantStatus: 0, wantOut: "137\n", wantErr: "Killed"},
		// podman maps the runtime's "executable file not found" or "no such
		// file or directory" error text to 127.
		{name: "not-found", args: []string{"no-such-command"}, wantStatus: 127, wantErr: "no-such-command"},
		// ... and "permission denied" to 126: what execve refuses.
		{name: "a-directory", args: []string{"/etc"}, wantStatus: 126, wantErr: "permission denied"},
		{name: "not-executable", args: []string{"/etc/passwd"}, wantStatus: 126, wantErr: "permission denied"},
		// conmon's --timeout kills the container; podman says 255, as with runc.
		{name: "timeout", flags: []string{"--timeout", "3"}, args: []string{"sleep", "600"}, wantStatus: 255},
		// runc's HOME for a user the image's passwd does not know: "/".
		{name: "home-without-passwd-entry", flags: []string{"--user", "100"}, args: []string{"sh", "-c", "echo \"HOME=$HOME\""}, wantOut: "HOME=/\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			name := "initos-pm-" + c.name
			p.removeLater(t, name)
			args := append(append([]string{"run", "--rm", "--name", name, "--network", "none"}, c.flags...), podmanImage)
			r := p.run(t, nil, append(args, c.args...)...)
			if r.code != c.wantStatus || string(r.stdout) != c.wantOut || !strings.Contains(string(r.stderr), c.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q",
					r.code, r.stdout, r.stderr, c.wantStatus, c.wantOut, c.wantErr)
			}
		})
	}
}

// testPodmanKillAndStop: `podman kill -s USR1` reaches the process's trap
// and leaves it running; `podman stop` sends TERM, which the process obeys
// with the status its trap chooses.
func testPodmanKillAndStop(t *testing.T, p *podman) {
	name := "initos-pm-kill-stop"
	p.detached(t, name, "sh", "-c", `trap 'echo got-usr1' USR1; trap 'echo got-term; exit 143' TERM; echo ready; while :; do sleep 0.2; done`)
	p.waitLogs(t, name, "ready", settleTimeout)
	p.ok(t, "kill", "--signal", "USR1", name)
	p.waitLogs(t, name, "got-usr1", settleTimeout)
	if s := p.inspect(t, name, "{{.State.Status}}"); s != "running" {
		t.Fatalf("status %q after SIGUSR1, want running", s)
	}
	t0 := time.Now()
	p.ok(t, "stop", "--time", "60", name)
	if took := time.Since(t0); took > 30*time.Second {
		t.Errorf("podman stop took %s: the TERM trap should end the process at once", took.Round(time.Millisecond))
	}
	if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 143" {
		t.Errorf("state %q after podman stop, want exited 143", got)
	}
	if got := p.ok(t, "wait", name); got != "143" {
		t.Errorf("podman wait printed %q, want 143", got)
	}
	if out, _ := p.logs(t, name); !hasLine(out, "got-term") {
		t.Errorf("logs %q: no got-term from the TERM trap", out)
	}
}

// testPodmanStopTimeout: `podman stop -t 2` of a process that ignores TERM
// kills it after 2 s: status 137.
func testPodmanStopTimeout(t *testing.T, p *podman) {
	name := "initos-pm-stop-timeout"
	p.detached(t, name, "sh", "-c", `trap '' TERM; echo ready; while :; do sleep 0.2; done`)
	p.waitLogs(t, name, "ready", settleTimeout)
	t0 := time.Now()
	p.ok(t, "stop", "--time", "2", name)
	took := time.Since(t0)
	if took < 2*time.Second || took > 60*time.Second {
		t.Errorf("podman stop -t 2 took %s, want 2 s and the SIGKILL", took.Round(time.Millisecond))
	}
	if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 137" {
		t.Errorf("state %q after podman stop -t 2, want exited 137", got)
	}
	if got := p.ok(t, "wait", name); got != "137" {
		t.Errorf("podman wait printed %q, want 137", got)
	}
}

// testPodmanDetached: `podman run -d`, then `wait` gives the status and
// `logs` the two streams apart, complete once the container ended.
func testPodmanDetached(t *testing.T, p *podman) {
	name := "initos-pm-detached"
	id := p.detached(t, name, "sh", "-c", "echo out-1; echo err-1 >&2; sleep 1; echo out-2; exit 7")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("podman run -d printed %q, want a container ID", id)
	}
	if got := p.ok(t, "wait", name); got != "7" {
		t.Errorf("podman wait printed %q, want 7", got)
	}
	if out, errs := p.logs(t, name); out != "out-1\nout-2\n" || errs != "err-1\n" {
		t.Errorf("logs: stdout %q, stderr %q; want %q, %q", out, errs, "out-1\nout-2\n", "err-1\n")
	}
	if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 7" {
		t.Errorf("state %q, want exited 7", got)
	}
}

// prompt is busybox sh's interactive prompt.
var prompt = regexp.MustCompile(`# `)

// checkTerminal checks, in an interactive shell on tm, that the shell's
// stdin is a pty of rows×cols, then resizes tm and waits until the shell
// sees the new size.
func checkTerminal(t *testing.T, tm *terminal, rows, cols uint16) {
	t.Helper()
	// The typed line echoes back as "end-$((6*7))": only the output matches.
	tm.send("tty; stty size; echo end-$((6*7))\r")
	m := tm.expect(regexp.MustCompile(`([^\r\n]*)\r\n([^\r\n]*)\r\nend-42\r\n`), settleTimeout)
	if !regexp.MustCompile(`^/dev/pts/[0-9]+$`).MatchString(m[1]) {
		t.Errorf("tty printed %q, want a /dev/pts path", m[1])
	}
	if want := fmt.Sprintf("%d %d", rows, cols); m[2] != want {
		t.Errorf("stty size printed %q, want %q", m[2], want)
	}

	rows, cols = rows+13, cols+31
	tm.resize(rows, cols)
	want := fmt.Sprintf("%d %d", rows, cols)
	// The new size travels through podman and conmon (and the VM) to the
	// container's pty: ask until it arrives.
	poll(t, settleTimeout, "terminal size "+want+" in the container", func() (bool, string) {
		tm.send("stty size; echo end-$((6*7))\r")
		m := tm.expect(regexp.MustCompile(`([^\r\n]*)\r\nend-42\r\n`), settleTimeout)
		return m[1] == want, fmt.Sprintf("stty size printed %q", m[1])
	})
}

// testPodmanRunTerminal: `podman run -it` on a real terminal gives the
// process a pty of the terminal's size that follows its resizes; the
// shell's exit status is podman's.
func testPodmanRunTerminal(t *testing.T, p *podman) {
	name := "initos-pm-run-it"
	p.removeLater(t, name)
	tm := p.startTerminal(t, 33, 101, "run", "-it", "--rm", "--name", name, "--network", "none", podmanImage, "sh")
	tm.expect(prompt, podmanTimeout)
	checkTerminal(t, tm, 33, 101)
	tm.send("exit 5\r")
	if code := tm.wait(settleTimeout); code != 5 {
		t.Errorf("podman run -it exited %d, want 5 (the shell's exit)", code)
	}
}

// testPodmanLifecycle runs one container and, in order: execs of every
// kind, top, pause/unpause, and rm -f, which must leave nothing behind.
func testPodmanLifecycle(t *testing.T, p *podman) {
	name := "initos-pm-lifecycle"
	id := p.detached(t, name, "sh", "-c", "sleep 31415 & echo ready; while :; do echo tick; sleep 0.2; done")
	p.waitLogs(t, name, "ready", settleTimeout)

	t.Run("exec", func(t *testing.T) {
		type tc struct {
			name       string
			flags      []string
			args       []string
			stdin      []byte
			wantStatus int
			wantOut    string
			wantErr    string // exact, but for not-found: a substring
		}
		cases := []tc{
			{name: "plain", args: []string{"echo", "hello"}, wantOut: "hello\n"},
			{name: "status-and-stderr", args: []string{"sh", "-c", "echo bye; echo oops >&2; exit 5"}, wantStatus: 5, wantOut: "bye\n", wantErr: "oops\n"},
			{name: "env", flags: []string{"-e", "FOO=bar baz"}, args: []string{"sh", "-c", `echo "$FOO"`}, wantOut: "bar baz\n"},
			{name: "uid-gid", flags: []string{"-u", "1000:1000"}, args: []string{"sh", "-c", "id -u; id -g"}, wantOut: "1000\n1000\n"},
			{name: "user-name", flags: []string{"--user", "user"}, args: []string{"sh", "-c", "id -u; id -g"}, wantOut: "1000\n1000\n"},
			{name: "workdir", flags: []string{"-w", "/etc"}, args: []string{"pwd"}, wantOut: "/etc\n"},
			{name: "stdin", flags: []string{"-i"}, args: []string{"cat"}, stdin: []byte("line one\nline two\n"), wantOut: "line one\nline two\n"},
			// An exec'd process is never its PID namespace's init.
			{name: "sigkill-self", args: []string{"sh", "-c", "kill -9 $$; echo survived"}, wantStatus: 137},
			{name: "not-found", args: []string{"no-such-command"}, wantStatus: 127, wantErr: "no-such-command"},
			{name: "a-directory", args: []string{"/etc"}, wantStatus: 126, wantErr: "permission denied"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				args := append(append(append([]string{"exec"}, c.flags...), name), c.args...)
				r := p.run(t, c.stdin, args...)
				errOK := string(r.stderr) == c.wantErr
				if c.name == "not-found" || c.name == "a-directory" {
					errOK = strings.Contains(string(r.stderr), c.wantErr)
				}
				if r.code != c.wantStatus || string(r.stdout) != c.wantOut || !errOK {
					t.Errorf("podman %s: exit %d, stdout %q, stderr %q; want %d, %q, %q",
						strings.Join(args, " "), r.code, r.stdout, r.stderr, c.wantStatus, c.wantOut, c.wantErr)
				}
			})
		}
	})

	t.Run("exec-it", func(t *testing.T) {
		tm := p.startTerminal(t, 27, 90, "exec", "-it", name, "sh")
		tm.expect(prompt, settleTimeout)
		checkTerminal(t, tm, 27, 90)
		tm.send("exit 6\r")
		if code := tm.wait(settleTimeout); code != 6 {
			t.Errorf("podman exec -it exited %d, want 6 (the shell's exit)", code)
		}
	})

	t.Run("top", func(t *testing.T) {
		// podman's own ps (psgo) reads /proc in the mount namespace of the
		// container's pid. Under runc that is the container's; under initos
		// the pid is the monitor's, whose view's /proc lists the container's
		// processes in its VM (procview): sleep as PID 1, started moments
		// ago (start times moved to the host's boot time), and nothing of
		// the host.
		out := p.ok(t, "top", name, "pid", "ppid", "etime", "args")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 2 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "COMMAND") {
			t.Fatalf("podman top printed %q, want a table ending with COMMAND", out)
		}
		// PID 1 is the shell (parent 0: outside the namespace), sleep its
		// child.
		var shell, sleep bool
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) < 4 {
				t.Errorf("podman top: short line %q", l)
				continue
			}
			args := strings.Join(f[3:], " ")
			shell = shell || f[0] == "1" && f[1] == "0" && strings.HasPrefix(args, "sh -c sleep 31415")
			if args == "sleep 31415" && f[1] == "1" {
				sleep = true
				// psgo prints a Go duration: seconds or minutes here, never
				// hours (a start time on the guest's boot clock) or less
				// than nothing.
				if strings.ContainsAny(f[2], "h-") {
					t.Errorf("podman top: sleep's elapsed time %q", f[2])
				}
			}
			for _, o := range []string{"conmon", "podman", "qemu", "virtiofsd", "initos-runtime"} {
				if strings.Contains(l, o) {
					t.Errorf("podman top lists %q: %q", o, l)
				}
			}
		}
		if !shell || !sleep {
			t.Errorf("podman top printed %q: want sh as PID 1 of parent 0 and sleep 31415 its child", out)
		}
	})

	t.Run("top-ps", func(t *testing.T) {
		// ps(1) options psgo does not know make podman run ps in the container.
		out := p.ok(t, "top", name, "-o", "pid,args")
		if !regexp.MustCompile(`(?m)^\s*[0-9]+\s+sleep 31415\s*$`).MatchString(out) {
			t.Errorf("podman top %s -o pid,args printed %q: no sleep 31415", name, out)
		}
	})

	t.Run("pause-unpause", func(t *testing.T) {
		ticks := func() int {
			out, _ := p.logs(t, name)
			return strings.Count(out, "tick\n")
		}
		p.ok(t, "pause", name)
		if s := p.inspect(t, name, "{{.State.Status}}"); s != "paused" {
			t.Fatalf("status %q after podman pause, want paused", s)
		}
		// A tick written just before the pause may still be on its way.
		time.Sleep(500 * time.Millisecond)
		before := ticks()
		time.Sleep(2 * time.Second)
		if after := ticks(); after != before {
			t.Errorf("%d ticks logged in 2 s of pause: the container kept running", after-before)
		}
		p.ok(t, "unpause", name)
		if s := p.inspect(t, name, "{{.State.Status}}"); s != "running" {
			t.Fatalf("status %q after podman unpause, want running", s)
		}
		poll(t, settleTimeout, "tick after unpause", func() (bool, string) {
			n := ticks()
			return n > before, fmt.Sprintf("%d ticks, %d before", n, before)
		})
		// The guest's clock stood still while paused: after unpause it
		// is the host's again, as a frozen cgroup's never stopped.
		t0 := time.Now().Unix()
		out := p.ok(t, "exec", name, "date", "+%s")
		t1 := time.Now().Unix()
		if guest, err := strconv.ParseInt(out, 10, 64); err != nil || guest < t0-1 || guest > t1+1 {
			t.Errorf("the guest's clock after unpause: %q, the host's %d..%d", out, t0, t1)
		}
	})

	t.Run("rm-f", func(t *testing.T) {
		pid, err := strconv.Atoi(p.inspect(t, name, "{{.State.Pid}}"))
		if err != nil || pid <= 0 {
			t.Fatalf("container pid %d (%v): want the running container's", pid, err)
		}
		conmon, err := strconv.Atoi(p.inspect(t, name, "{{.State.ConmonPid}}"))
		if err != nil || conmon <= 0 {
			t.Fatalf("conmon pid %d (%v)", conmon, err)
		}
		procs := []proc{procOf(t, pid), procOf(t, conmon)}
		// The leftover check must be able to fail: it sees the running ones.
		if running := processesOf(id, p.stateDir(id)); len(running) == 0 {
			t.Fatalf("no process names container %s or holds its state dir while it runs", id)
		}
		if p.initos {
			// The rootfs is shared with the VM, not copied.
			if _, err := os.Stat(filepath.Join(p.stateDir(id), "root", "c")); err != nil {
				t.Fatalf("root share entry of the running container %s: %v", id, err)
			}
		}
		p.ok(t, "rm", "--force", name)
		p.assertRemoved(t, id, procs...)
	})
}

// testPodmanRestartLogs: a container started again (podman start) runs
// in a new VM, and its log (k8s-file) keeps the first run's output beside
// the second's, as under runc.
func testPodmanRestartLogs(t *testing.T, p *podman) {
	name := "initos-pm-restart-logs"
	p.removeLater(t, name)
	if out := p.ok(t, "run", "--name", name, "--network", "none", podmanImage, "echo", "a-run"); out != "a-run" {
		t.Fatalf("first run printed %q", out)
	}
	if out := p.ok(t, "start", "--attach", name); out != "a-run" {
		t.Fatalf("second run printed %q", out)
	}
	if out, _ := p.logs(t, name); out != "a-run\na-run\n" {
		t.Errorf("podman logs after two runs: %q, want both runs' output", out)
	}
	// podman restart of a running container.
	running := name + "-running"
	p.detached(t, running, "sh", "-c", "echo up; exec sleep 3600")
	p.waitLogs(t, running, "up", settleTimeout)
	p.ok(t, "restart", "-t", "0", running)
	poll(t, settleTimeout, "the restarted container's output", func() (bool, string) {
		out, _ := p.logs(t, running)
		return out == "up\nup\n", fmt.Sprintf("podman logs: %q", out)
	})
}

// testPodmanBlockIO: block I/O limits are refused at create with a reason
// naming them (they name host devices a VM's guest does not have), not
// dropped without a word as before.
func testPodmanBlockIO(t *testing.T, p *podman) {
	if !p.initos {
		t.Skip("runc applies block I/O limits in the host's cgroup")
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	dev, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Skipf("the root filesystem is on no block device: %v", err)
	}
	r := p.run(t, nil, "run", "--rm", "--device-read-bps", "/dev/"+filepath.Base(dev)+":1mb", "--network", "none", podmanImage, "true")
	if r.code == 0 || !strings.Contains(string(r.stderr), "block I/O limits") {
		t.Errorf("podman run --device-read-bps: exit %d, stderr %q; want a refusal naming block I/O limits", r.code, r.stderr)
	}
}

// testPodmanPreserveFds: `podman run --preserve-fds 1` gives the container's
// process podman's descriptor 3. runc passes it (the process reads the
// file through it); a VM cannot take a host descriptor, so initos-runtime
// refuses the container at create with an error naming the option, and
// podman is left with no container of that name.
func testPodmanPreserveFds(t *testing.T, p *podman) {
	f, err := os.CreateTemp(t.TempDir(), "fd3")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("through-fd-3\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	name := "initos-pm-preserve-fds"
	p.removeLater(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	cmd := p.command(ctx, "run", "--rm", "--name", name, "--network", "none", "--preserve-fds", "1", podmanImage, "sh", "-c", "cat <&3")
	cmd.ExtraFiles = []*os.File{f}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("podman run --preserve-fds 1 did not finish within %s; stderr:\n%s", podmanTimeout, errb.Bytes())
	}
	if !p.initos {
		if err != nil || out.String() != "through-fd-3\n" {
			t.Errorf("podman run --preserve-fds 1: %v, stdout %q, stderr %q; want the file read through fd 3", err, out.String(), errb.String())
		}
		return
	}
	if err == nil || !strings.Contains(errb.String(), "--preserve-fds 1") || !strings.Contains(errb.String(), "cannot take file descriptors") {
		t.Errorf("podman run --preserve-fds 1: %v, stdout %q, stderr %q; want a refusal naming --preserve-fds", err, out.String(), errb.String())
	}
	if r := p.run(t, nil, "ps", "--all", "--quiet", "--filter", "name=^"+name+"$"); r.code != 0 || len(bytes.TrimSpace(r.stdout)) != 0 {
		t.Errorf("podman ps after the refusal: exit %d, %q (%s); want no container %s", r.code, r.stdout, r.stderr, name)
	}
}
