package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Deadlines of the podman tests. A podman command that creates a container
// boots a VM with initos-runtime (seconds under TCG, bootTimeout at most).
const (
	podmanTimeout = 5 * time.Minute  // any one podman command
	settleTimeout = 60 * time.Second // a state change after a command returned
)

// podmanRuntimeName is the name the runtime under test is registered under
// in containers.conf, whichever binary it is: podman and conmon key some
// behaviour on the name (conmon passes --log-format=json --log only to
// runtimes it knows, such as runc), so runc registered as "initos" sees the
// same command lines initos-runtime will.
const podmanRuntimeName = "initos"

// podmanImage is the busybox root filesystem imported into the test store.
const podmanImage = "localhost/initos-busybox:latest"

// podman is one isolated podman setup: its own containers.conf, storage
// (graph root, run root, tmp dir, locks, events) in a temporary directory,
// and the runtime under test registered as podmanRuntimeName.
type podman struct {
	dir     string
	env     []string // CONTAINERS_CONF and CONTAINERS_STORAGE_CONF on top of ours
	runtime string   // the wrapper registered as podmanRuntimeName
	// initos: the runtime under test is initos-runtime, so its own leftovers
	// (state dir, disk image, VMM) are checked too.
	initos bool
	// stateRoot is initos-runtime's --root: container ID's state dir is
	// stateRoot/ID.
	stateRoot string
}

// podmanPrograms are what every podman test runs: podman, conmon, the
// netavark backend the tests configure (in podman's helper directory) with
// the iptables it sets up networks with, and tar for the image.
var podmanPrograms = []program{
	deb("podman", "podman"),
	deb("conmon", "conmon"),
	deb("netavark", "netavark", "/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"),
	deb("iptables", "iptables", "iptables", "/usr/sbin/iptables"),
	deb("tar", "tar"),
}

// newPodman skips (or, with INITOS_INTEGRATION=1, fails) without
// podmanPrograms, sets up an isolated podman and imports the busybox image.
// INITOS_PODMAN_RUNTIME selects the runtime under test: empty or "initos"
// is the built initos-runtime, "runc" or another name or path a runc-like
// runtime, to validate the tests themselves.
func newPodman(t testing.TB) *podman {
	t.Helper()
	return newPodmanFor(t, os.Getenv("INITOS_PODMAN_RUNTIME"))
}

// newPodmanFor is newPodman for a given runtime ("" or "initos": ours).
func newPodmanFor(t testing.TB, rt string) *podman {
	t.Helper()
	return newPodmanConfig(t, rt, env.config)
}

// newPodmanWithConfig is newPodman with initos-runtime reading config
// instead of the run's (e.g. one derived from env.cfg with another
// shareFS); another runtime selected by INITOS_PODMAN_RUNTIME ignores it.
func newPodmanWithConfig(t testing.TB, config string) *podman {
	t.Helper()
	return newPodmanConfig(t, os.Getenv("INITOS_PODMAN_RUNTIME"), config)
}

// newPodmanConfig is newPodmanFor with initos-runtime's config file.
func newPodmanConfig(t testing.TB, rt, config string) *podman {
	t.Helper()
	needVMs(t)
	requirePrograms(t, podmanPrograms...)

	p := &podman{dir: t.TempDir()}
	// The runtime podman runs is a wrapper script in p.dir: podman runs it
	// with runc's flags only, and with none of our environment (`kill` and
	// `delete` get XDG_RUNTIME_DIR and nothing else, not even PATH; only
	// CONTAINERS_CONF reaches conmon).
	p.runtime = filepath.Join(p.dir, podmanRuntimeName)
	var wrapper string
	switch rt {
	case "", "initos":
		p.initos = true
		// The config (the run's: data dir, kernel) reaches initos-runtime
		// as INITOS_CONFIG. The state root is a short one of our own: podman's
		// container IDs are 64 characters and the VMM's sockets live in
		// <root>/<id>, which the run's temporary root makes too long.
		root, err := os.MkdirTemp("", "ipm-")
		if err != nil {
			t.Fatal(err)
		}
		p.stateRoot = root
		t.Cleanup(func() {
			if err := os.Remove(root); err != nil {
				t.Errorf("state root of the podman tests: %v", err)
				os.RemoveAll(root)
			}
		})
		wrapper = fmt.Sprintf("#!/bin/sh\nINITOS_CONFIG=%s\nexport INITOS_CONFIG\nexec %s --root %s \"$@\"\n",
			shellQuote(config), shellQuote(env.bin), shellQuote(root))
	default:
		path, err := exec.LookPath(rt)
		if err != nil {
			t.Fatalf("INITOS_PODMAN_RUNTIME=%s: %v", rt, err)
		}
		if path, err = filepath.Abs(path); err != nil {
			t.Fatal(err)
		}
		// A state root of our own: runc's default, /run/runc, is shared with
		// everything else on the host that runs runc (and cleans up after
		// itself there).
		wrapper = fmt.Sprintf("#!/bin/sh\nexec %s --root %s \"$@\"\n",
			shellQuote(path), shellQuote(filepath.Join(p.dir, "runtime-state")))
	}
	if err := os.WriteFile(p.runtime, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}

	// default_ulimits: podman's defaults (nofile 1048576) exceed this host's
	// hard limits and every container would fail to start.
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = %[1]q
lock_type = "file"
volume_path = %[2]q

[engine.runtimes]
%[3]s = [%[4]q]

[network]
network_backend = "netavark"
network_config_dir = %[5]q
`, filepath.Join(p.dir, "tmp"), filepath.Join(p.dir, "volumes"), podmanRuntimeName, p.runtime, filepath.Join(p.dir, "networks"))
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.dir, "graph"), filepath.Join(p.dir, "run"))
	for name, content := range map[string]string{"containers.conf": conf, "storage.conf": storage} {
		if err := os.WriteFile(filepath.Join(p.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(p.dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(p.dir, "storage.conf"))
	// Runs before t.TempDir removes the directory (cleanups run last first):
	// no container may outlive the test, nor a mount in the store.
	t.Cleanup(func() {
		if r := p.run(t, nil, "rm", "--all", "--force", "--time", "0"); r.code != 0 {
			t.Errorf("podman rm --all: exit %d: %s", r.code, r.stderr)
		}
		p.run(t, nil, "rmi", "--all", "--force")
		if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil && bytes.Contains(mounts, []byte(p.dir)) {
			t.Errorf("mounts under %s left behind", p.dir)
		}
	})

	tarball := filepath.Join(p.dir, "busybox.tar")
	if b, err := exec.Command("tar", "-C", filepath.Join(env.busybox, "rootfs"), "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar of the busybox rootfs: %v: %s", err, b)
	}
	p.ok(t, "import", tarball, podmanImage)
	return p
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// command is podman with this setup's environment and the runtime under test.
func (p *podman) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--runtime", podmanRuntimeName}, args...)...)
	cmd.Env = p.env
	// `podman run -d` leaves conmon behind; should it ever hold our pipes,
	// Wait returns anyway.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs podman to completion within podmanTimeout.
func (p *podman) run(t testing.TB, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	cmd := p.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("podman %s did not finish within %s; stderr:\n%s", strings.Join(args, " "), podmanTimeout, errb.Bytes())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running podman %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: out.Bytes(), stderr: errb.Bytes(), code: code}
}

// ok runs podman, fails the test unless it exits 0 and returns its
// stdout without the trailing newline.
func (p *podman) ok(t testing.TB, args ...string) string {
	t.Helper()
	r := p.run(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("podman %s: exit %d; stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return strings.TrimSuffix(string(r.stdout), "\n")
}

// networkSubnets numbers the podman networks the tests create. Each podman
// setup has a network configuration of its own, so two networks made in
// parallel tests both took podman's first free subnet (10.89.0.0/24) and
// bridge, and one test's containers shared addresses with another's (a
// wget by name reached the other test's server).
var networkSubnets atomic.Int32

// createNetwork creates podman network name, with args, on a subnet no
// other network of the tests has and on a bridge of its own, and removes it
// at cleanup.
func (p *podman) createNetwork(t testing.TB, name string, args ...string) {
	t.Helper()
	n := 100 + networkSubnets.Add(1)
	p.ok(t, append(append([]string{"network", "create", "--subnet", fmt.Sprintf("10.89.%d.0/24", n)}, args...), name)...)
	t.Cleanup(func() { p.run(t, nil, "network", "rm", "-f", name) })
	// Its bridge too (podman 4.3's create has no --interface-name): the
	// configuration is read by each podman command.
	conf := filepath.Join(p.dir, "networks", name+".json")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("network %s: %s: %v", name, conf, err)
	}
	cfg["network_interface"] = fmt.Sprintf("initos-br%d", n)
	if b, err = json.Marshal(cfg); err == nil {
		err = os.WriteFile(conf, b, 0o644)
	}
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
}

// removeLater removes container name (whatever its state) when t ends.
func (p *podman) removeLater(t testing.TB, name string) {
	t.Cleanup(func() {
		if r := p.run(t, nil, "rm", "--force", "--ignore", "--time", "0", name); r.code != 0 {
			t.Errorf("podman rm -f %s: exit %d: %s", name, r.code, r.stderr)
		}
	})
}

// detached starts `podman run -d` of the busybox image with args as
// container name and returns its full ID.
func (p *podman) detached(t testing.TB, name string, args ...string) string {
	t.Helper()
	p.removeLater(t, name)
	return p.ok(t, append([]string{"run", "-d", "--name", name, "--network", "none", podmanImage}, args...)...)
}

func (p *podman) inspect(t testing.TB, name, format string) string {
	t.Helper()
	return p.ok(t, "inspect", "--format", format, name)
}

// logs returns container name's stdout and stderr as podman logs gives them.
func (p *podman) logs(t testing.TB, name string) (stdout, stderr string) {
	t.Helper()
	r := p.run(t, nil, "logs", name)
	if r.code != 0 {
		t.Fatalf("podman logs %s: exit %d; stderr:\n%s", name, r.code, r.stderr)
	}
	return string(r.stdout), string(r.stderr)
}

// waitLogs waits until container name's stdout has the line want.
func (p *podman) waitLogs(t testing.TB, name, want string, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, fmt.Sprintf("line %q in the logs of %s", want, name), func() (bool, string) {
		out, errs := p.logs(t, name)
		return hasLine(out, want), fmt.Sprintf("stdout %q, stderr %q", out, errs)
	})
}

func hasLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// poll calls f every 200 ms until it returns true, and fails the test with
// what and f's last description after timeout.
func poll(t testing.TB, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	if ok, last := pollUntil(timeout, f); !ok {
		t.Fatalf("no %s within %s; last: %s", what, timeout, last)
	}
}

// pollUntil calls f every 200 ms until it returns true or timeout has
// passed; it returns whether f did and f's last description.
func pollUntil(timeout time.Duration, f func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		done, last := f()
		if done || time.Now().After(deadline) {
			return done, last
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// proc identifies a process across pid reuse: pid and start time.
type proc struct {
	pid   int
	start string
}

// procOf returns the running process pid (its start time read from /proc).
func procOf(t testing.TB, pid int) proc {
	t.Helper()
	start, err := procStart(pid)
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	return proc{pid, start}
}

func procStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// Field 22; the command name (field 2) may hold spaces: count after ')'.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 20 {
		return "", fmt.Errorf("short /proc/%d/stat", pid)
	}
	return fields[19], nil
}

func (pr proc) alive() bool {
	start, err := procStart(pr.pid)
	if err != nil || start != pr.start {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pr.pid))
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return fields[0] != "Z"
}

// otherPids lists the host's processes (in /proc), but this one.
func otherPids() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesOf lists the processes whose command line names id, or (with
// dir set) whose cwd or open files are under dir.
func processesOf(id, dir string) []string {
	var found []string
	for _, pid := range otherPids() {
		proc := filepath.Join("/proc", strconv.Itoa(pid))
		b, err := os.ReadFile(filepath.Join(proc, "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if strings.Contains(cmdline, id) {
			found = append(found, fmt.Sprintf("%d (%s)", pid, cmdline))
			continue
		}
		if dir == "" {
			continue
		}
		links := []string{filepath.Join(proc, "cwd")}
		fds, _ := filepath.Glob(filepath.Join(proc, "fd", "*"))
		for _, l := range append(links, fds...) {
			if target, err := os.Readlink(l); err == nil && (target == dir || strings.HasPrefix(target, dir+"/")) {
				found = append(found, fmt.Sprintf("%d (%s) holds %s", pid, cmdline, target))
				break
			}
		}
	}
	return found
}

// assertRemoved checks that container id and everything that ran it are
// gone: podman knows it no more, procs (its conmon, its runtime process)
// ended, no process names it; with initos-runtime also no process (VMM,
// monitor) holds a file in its state dir, and neither that dir (control
// socket, console log) nor its disk image is left.
func (p *podman) assertRemoved(t testing.TB, id string, procs ...proc) {
	t.Helper()
	if r := p.run(t, nil, "container", "exists", id); r.code != 1 {
		t.Errorf("podman container exists %s: exit %d, want 1 (no such container); stderr: %s", id, r.code, r.stderr)
	}
	stateDir := p.stateDir(id)
	poll(t, settleTimeout, "end of the processes of container "+id, func() (bool, string) {
		var left []string
		for _, pr := range procs {
			if pr.alive() {
				left = append(left, fmt.Sprintf("pid %d", pr.pid))
			}
		}
		left = append(left, processesOf(id, stateDir)...)
		return len(left) == 0, strings.Join(left, "; ")
	})
	if !p.initos {
		return
	}
	if _, err := os.Lstat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s of container %s left behind (%v)", stateDir, id, err)
	}
	if disks, _ := filepath.Glob(filepath.Join(env.cfg.DataDir, "disks", id+"-*")); len(disks) > 0 {
		t.Errorf("disk images of container %s left behind: %v", id, disks)
	}
}

// stateDir is initos-runtime's state dir of container id ("" for another runtime).
func (p *podman) stateDir(id string) string {
	if !p.initos {
		return ""
	}
	return filepath.Join(p.stateRoot, id)
}

// terminal is a command whose stdin, stdout and stderr are the slave of a
// pseudo-terminal, its controlling terminal; the test holds the master.
type terminal struct {
	t      testing.TB
	cmd    *exec.Cmd
	master *os.File // non-blocking: reads honour deadlines
	out    []byte   // all output read so far
	seen   int      // out[:seen] was consumed by expect
	done   chan struct{}
	err    error // of cmd.Wait, once done is closed
}

// startTerminal runs podman args in a new session on a new pty of rows×cols.
func (p *podman) startTerminal(t testing.TB, rows, cols uint16, args ...string) *terminal {
	t.Helper()
	// os.OpenFile registers the master with the poller, so SetReadDeadline
	// works; its Fd method would make it blocking again: ioctls go through
	// SyscallConn.
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pty: %v", err)
	}
	tm := &terminal{t: t, master: master, done: make(chan struct{})}
	var slaveFd int
	err = tm.control(func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlocking the pty: %w", err)
		}
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
			return fmt.Errorf("setting the pty size: %w", err)
		}
		// TIOCGPTPEER opens the slave of this very master, whichever devpts
		// instance /dev/pts is.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
		if errno != 0 {
			return fmt.Errorf("opening the pty slave: %w", errno)
		}
		slaveFd = int(r)
		return nil
	})
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	slave := os.NewFile(uintptr(slaveFd), "pty-slave")
	defer slave.Close()

	tm.cmd = p.command(context.Background(), args...)
	tm.cmd.Stdin, tm.cmd.Stdout, tm.cmd.Stderr = slave, slave, slave
	tm.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := tm.cmd.Start(); err != nil {
		master.Close()
		t.Fatalf("starting podman %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		tm.err = tm.cmd.Wait()
		close(tm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.done:
		default:
			tm.cmd.Process.Kill()
			<-tm.done
		}
		master.Close()
	})
	return tm
}

func (tm *terminal) control(f func(fd int) error) error {
	rc, err := tm.master.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// expect reads the terminal until re matches output not consumed yet, and
// returns the match's submatches; it fails the test after timeout.
func (tm *terminal) expect(re *regexp.Regexp, timeout time.Duration) []string {
	tm.t.Helper()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		if m := re.FindSubmatch(tm.out[tm.seen:]); m != nil {
			loc := re.FindIndex(tm.out[tm.seen:])
			tm.seen += loc[1]
			subs := make([]string, len(m))
			for i, s := range m {
				subs[i] = string(s)
			}
			return subs
		}
		if err := tm.master.SetReadDeadline(deadline); err != nil {
			tm.t.Fatalf("pty read deadline: %v", err)
		}
		n, err := tm.master.Read(buf)
		tm.out = append(tm.out, buf[:n]...)
		if err != nil {
			tm.t.Fatalf("waiting for %q on the terminal: %v; unread output:\n%q", re, err, tm.out[tm.seen:])
		}
	}
}

// send types s.
func (tm *terminal) send(s string) {
	tm.t.Helper()
	if err := tm.master.SetWriteDeadline(time.Now().Add(settleTimeout)); err != nil {
		tm.t.Fatal(err)
	}
	if _, err := tm.master.Write([]byte(s)); err != nil {
		tm.t.Fatalf("typing %q: %v", s, err)
	}
}

// resize sets the terminal's size, as a terminal emulator does: the kernel
// sends SIGWINCH to the foreground process group (podman).
func (tm *terminal) resize(rows, cols uint16) {
	tm.t.Helper()
	if err := tm.control(func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		tm.t.Fatalf("resizing the pty: %v", err)
	}
}

// wait waits for the command's end and returns its exit status.
func (tm *terminal) wait(timeout time.Duration) int {
	tm.t.Helper()
	// Drain the output meanwhile: a full pty buffer would block the writer.
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		select {
		case <-tm.done:
			var ee *exec.ExitError
			if tm.err != nil && !errors.As(tm.err, &ee) {
				tm.t.Fatalf("podman: %v", tm.err)
			}
			return tm.cmd.ProcessState.ExitCode()
		default:
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("podman did not exit within %s; unread output:\n%q", timeout, tm.out[tm.seen:])
		}
		tm.master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := tm.master.Read(buf)
		tm.out = append(tm.out, buf[:n]...)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// EIO once no one holds the slave: podman is about to end.
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// bothRuntimes gives podman with runc and with initos-runtime, for tests
// that run the same commands under both and compare: the names in order,
// and each one's podman.
func bothRuntimes(t testing.TB) ([]string, map[string]*podman) {
	runtimes := []string{"runc", "initos"}
	pods := map[string]*podman{}
	for _, rt := range runtimes {
		pods[rt] = newPodmanFor(t, rt)
	}
	return runtimes, pods
}
