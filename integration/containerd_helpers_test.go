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
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// Deadlines of the containerd tests. A command that starts a container
// with the initos runtime boots a VM (seconds under TCG, bootTimeout at most).
const (
	containerdCmdTimeout   = 5 * time.Minute  // any one ctr, nerdctl or crictl command
	containerdStartTimeout = 60 * time.Second // containerd answering on its socket
	containerdStopTimeout  = 30 * time.Second // containerd ending after SIGTERM, before SIGKILL
	crictlRPCTimeout       = 4 * time.Minute  // crictl's own per-call --timeout
)

// The runtimes registered with the private containerd, by containerd's
// runtime type (ctr run --runtime, nerdctl run --runtime) and, for CRI, by
// handler name (crictl runp --runtime).
const (
	runcRuntimeType   = "io.containerd.runc.v2"
	initosRuntimeType = "io.containerd.initos.v2" // the binary containerd-shim-initos-v2
	initosHandler     = "initos"
	// The containerd namespaces the images are imported into.
	nerdctlNamespace = "default"
	criNamespace     = "k8s.io"
	// cniBinDir is where Debian's containernetworking-plugins installs the plugins.
	cniBinDir = "/usr/lib/cni"
)

// containerd is one private containerd, a child of the test process, with
// everything of its own under dir: root, state, sockets, its config, the
// CNI configurations of CRI and nerdctl, nerdctl's data root, and the
// state root of the initos runtime it runs.
type containerd struct {
	dir     string // short (socket paths): os.MkdirTemp("", "ictd-")
	address string // gRPC socket: ctr, nerdctl and crictl talk to it
	ttrpc   string // ttrpc socket (shims publish events on it)
	root    string
	state   string
	config  string // containerd's config.toml
	log     string // containerd's stdout and stderr (and the shims' logs)
	// initosConfig is the initos runtime's config, as INITOS_CONFIG in
	// containerd's (so the shims') environment and as the CRI runtime's
	// options ConfigPath: the run's config (env.config) with a short state
	// root, initosRoot: container IDs of nerdctl and CRI are 64 characters,
	// and VMM sockets live in <root>/<id>.
	initosConfig string
	initosRoot   string
	fifoDir      string // for ctr run --fifo-dir, instead of /run/containerd/fifo
	// CNI: CRI's network (conf dir criNetConf) and nerdctl's default network
	// "bridge" (nerdctlNetConf), each a bridge of its own on the host.
	criNetConf, nerdctlNetConf string
	criBridge, nerdctlBridge   string
	criSubnet, nerdctlSubnet   string
	nerdctlRoot                string // nerdctl --data-root
	nerdctlTOML                string // NERDCTL_TOML: the same settings, for nerdctl's OCI hooks
	crictlConfig               string
	toolEnv                    []string // environment of ctr, nerdctl and crictl

	cmd    *exec.Cmd
	exited chan struct{} // closed when containerd has ended
	ready  bool          // it answered and its CRI plugin is up
}

// containerdSeq numbers the private containerds of this process: their
// bridges and subnets differ.
var containerdSeq atomic.Int32

// containerdPrograms are what the containerd tests run: the tools that
// scripts/containerd-setup.sh builds, runc for the runc runtime, ip, and
// the CNI plugins (with the iptables of portmap and firewall) that CRI and
// nerdctl run.
func containerdPrograms() []program {
	progs := []program{deb("runc", "runc"), deb("iproute2", "ip"), deb("iptables", "iptables", "iptables", "/usr/sbin/iptables")}
	for _, tool := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "nerdctl", "crictl"} {
		progs = append(progs, program{name: tool, from: "scripts/containerd-setup.sh builds it"})
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap", "firewall", "tuning"} {
		progs = append(progs, deb("containernetworking-plugins", p, filepath.Join(cniBinDir, p)))
	}
	return progs
}

// newContainerd skips (or, with INITOS_INTEGRATION=1, fails) without
// containerdPrograms, starts a private containerd
// with CRI, the runtimes runc and initos (the built
// containerd-shim-initos-v2 comes first in containerd's PATH) and imports
// containerdImage and pauseImage into the namespaces "default" and
// "k8s.io". When t ends it removes every container, task and pod, stops
// containerd and fails the test if anything of it is left: a process (a
// shim, a VMM) naming its directory or holding a file in it, a mount under
// it, a shim's socket, state in the initos runtime's root. Leftovers are
// removed all the same, and so are the directory and the bridges.
func newContainerd(t testing.TB) *containerd {
	t.Helper()
	needVMs(t)
	requirePrograms(t, containerdPrograms()...)
	images, err := containerdImages()
	if err != nil {
		t.Fatal(err)
	}

	dir, err := os.MkdirTemp("", "ictd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{
		dir:            dir,
		address:        filepath.Join(dir, "c.sock"),
		ttrpc:          filepath.Join(dir, "t.sock"),
		root:           filepath.Join(dir, "root"),
		state:          filepath.Join(dir, "state"),
		config:         filepath.Join(dir, "config.toml"),
		log:            filepath.Join(dir, "containerd.log"),
		initosConfig:   filepath.Join(dir, "initos.json"),
		initosRoot:     filepath.Join(dir, "r"),
		fifoDir:        filepath.Join(dir, "fifo"),
		criNetConf:     filepath.Join(dir, "cni-cri"),
		nerdctlNetConf: filepath.Join(dir, "cni-nerdctl"),
		nerdctlRoot:    filepath.Join(dir, "nerdctl"),
		nerdctlTOML:    filepath.Join(dir, "nerdctl.toml"),
		crictlConfig:   filepath.Join(dir, "crictl.yaml"),
		exited:         make(chan struct{}),
	}
	// One cleanup does it all, in order (containers before containerd,
	// containerd before the checks); it runs even if setup fails below.
	t.Cleanup(func() { c.cleanup(t) })
	c.pickNetworks(t)
	c.writeConfigs(t)
	c.start(t)
	for _, ns := range []string{nerdctlNamespace, criNamespace} {
		if r := c.ctr(t, "--namespace", ns, "images", "import", images); r.code != 0 {
			t.Fatalf("ctr images import into namespace %s: exit %d\nstdout: %s\nstderr: %s", ns, r.code, r.stdout, r.stderr)
		}
	}
	return c
}

// start runs containerd and waits until it answers `ctr version` and its
// CRI plugin is up.
func (c *containerd) start(t testing.TB) {
	t.Helper()
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// INITOS_CONTAINERD_LOG_LEVEL=debug also shows the shims' debug logs.
	level := os.Getenv("INITOS_CONTAINERD_LOG_LEVEL")
	if level == "" {
		level = "info"
	}
	c.cmd = exec.Command("containerd", "--config", c.config, "--log-level", level)
	// The built shim first: containerd runs containerd-shim-<name>-<version>
	// from its PATH. INITOS_CONFIG reaches the shims through containerd.
	c.cmd.Env = append(append([]string(nil), c.toolEnv...),
		"PATH="+filepath.Dir(env.shim)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"INITOS_CONFIG="+c.initosConfig)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Dir = c.dir
	// Its own process group (a ^C of the test does not reach it first);
	// killed should the test process die.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()

	deadline := time.Now().Add(containerdStartTimeout)
	for {
		select {
		case <-c.exited:
			t.Fatalf("containerd (config %s) exited during startup: %v; its log ends:\n%s", c.config, c.cmd.ProcessState, c.logTail(40))
		default:
		}
		if _, err := os.Stat(c.address); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.command(ctx, "ctr", "version").Run()
			cancel()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer `ctr --address %s version` within %s; its log ends:\n%s", c.address, containerdStartTimeout, c.logTail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A CRI plugin that failed to load (config, CNI) shows only in the
	// plugin list: say so here rather than in a crictl call later.
	r := c.ctr(t, "plugins", "ls")
	if r.code != 0 {
		t.Fatalf("ctr plugins ls: exit %d: %s", r.code, r.stderr)
	}
	for _, id := range []string{"io.containerd.grpc.v1\\s+cri", "io.containerd.cri.v1\\s+runtime", "io.containerd.cri.v1\\s+images"} {
		if !regexp.MustCompile(`(?m)^` + id + `\s+\S+\s+ok\s*$`).Match(r.stdout) {
			t.Fatalf("containerd's plugin %s is not ok:\n%s\ncontainerd's log ends:\n%s", strings.ReplaceAll(id, "\\s+", " "), r.stdout, c.logTail(40))
		}
	}
	c.ready = true
}

// logTail is the last n lines of containerd's log.
func (c *containerd) logTail(n int) string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// toolArgs is tool's command line with this containerd's settings first.
func (c *containerd) toolArgs(tool string, args []string) []string {
	var global []string
	switch tool {
	case "ctr":
		global = []string{"--address", c.address}
	case "nerdctl":
		global = []string{"--address", c.address, "--namespace", nerdctlNamespace, "--data-root", c.nerdctlRoot,
			"--cni-path", cniBinDir, "--cni-netconfpath", c.nerdctlNetConf, "--cgroup-manager", "cgroupfs"}
	case "crictl":
		endpoint := "unix://" + c.address
		global = []string{"--config", c.crictlConfig, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
			"--timeout", crictlRPCTimeout.String()}
	default:
		panic("containerd: unknown tool " + tool)
	}
	return append(global, args...)
}

// command is tool ("ctr", "nerdctl" or "crictl") with this containerd's
// address and configuration, and args; for commands to drive by hand
// (stdin, a terminal, in the background).
func (c *containerd) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, tool, c.toolArgs(tool, args)...)
	cmd.Env = c.toolEnv
	cmd.Dir = c.dir
	// A detached container's processes (shim, logging binary) must not keep
	// Wait waiting on our pipes.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs tool with stdin (nil: none) to completion within
// containerdCmdTimeout; the test fails if it cannot be run or does not end.
func (c *containerd) run(t testing.TB, stdin []byte, tool string, args ...string) result {
	t.Helper()
	r, err := c.runErr(stdin, tool, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runErr is run with an error instead of a failed test (for cleanups,
// which go on after a failure).
func (c *containerd) runErr(stdin []byte, tool string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerdCmdTimeout)
	defer cancel()
	cmd := c.command(ctx, tool, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("%s %s did not finish within %s; stderr:\n%s", tool, strings.Join(args, " "), containerdCmdTimeout, errb.Bytes())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return result{}, fmt.Errorf("running %s %s: %w", tool, strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: out.Bytes(), stderr: errb.Bytes(), code: code}, nil
}

// ctr runs `ctr --address ADDR args...` (namespace "default" unless args
// say --namespace/-n first).
func (c *containerd) ctr(t testing.TB, args ...string) result {
	t.Helper()
	return c.run(t, nil, "ctr", args...)
}

// nerdctl runs nerdctl against this containerd, in namespace "default",
// with its own data root and CNI networks (the default network "bridge").
func (c *containerd) nerdctl(t testing.TB, args ...string) result {
	t.Helper()
	return c.run(t, nil, "nerdctl", args...)
}

// crictl runs crictl against this containerd's CRI (namespace "k8s.io").
func (c *containerd) crictl(t testing.TB, args ...string) result {
	t.Helper()
	return c.run(t, nil, "crictl", args...)
}

// ok runs tool, fails the test unless it exits 0, and returns its stdout
// without the trailing newline.
func (c *containerd) ok(t testing.TB, tool string, args ...string) string {
	t.Helper()
	r := c.run(t, nil, tool, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", tool, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return strings.TrimSuffix(string(r.stdout), "\n")
}

// editInitosConfig changes the initos runtime's config, which each shim
// reads as it starts: the containers started after it run with it.
func (c *containerd) editInitosConfig(t testing.TB, edit func(*runtime.Config)) {
	t.Helper()
	b, err := os.ReadFile(c.initosConfig)
	if err != nil {
		t.Fatal(err)
	}
	var cfg runtime.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", c.initosConfig, err)
	}
	edit(&cfg)
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.initosConfig, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
