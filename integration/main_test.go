package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// env is what TestMain prepared for every test of the run.
var env struct {
	skip       string // non-empty: why the tests skip
	bin        string // the built initos-runtime
	shim       string // the built containerd-shim-initos-v2, beside bin
	config     string // the run's config file
	cfg        runtime.Config
	busybox    string // a busybox root filesystem shared by the tests
	repo       string
	runTimeout time.Duration
}

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		os.Exit(1)
	}
	if code >= 0 {
		os.Exit(code)
	}
	code = m.Run()
	if p := os.Getenv("INITOS_BENCH_REPORT"); p != "" && code == 0 {
		if err := writeReport(p); err != nil {
			fmt.Fprintf(os.Stderr, "integration: writing the bench report: %v\n", err)
			code = 1
		}
	}
	if env.skip == "" {
		os.RemoveAll(filepath.Dir(env.config))
	}
	os.Exit(code)
}

// setup builds the binaries, writes the run's config and builds the shared
// kernel/initrd once. It returns -1 to go on with the tests.
func setup() (int, error) {
	required := os.Getenv("INITOS_INTEGRATION") == "1"
	kernelRoot := os.Getenv("INITOS_KERNEL_ROOT")
	if kernelRoot == "" {
		kernelRoot = filepath.Join(runtime.DefaultDataDir, "kernel")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	missing = append(missing, missingPrograms(vmPrograms...)...)
	if _, err := os.Stat(filepath.Join(kernelRoot, "boot")); err != nil {
		missing = append(missing, "a guest kernel in "+kernelRoot+" (scripts/fetch-kernel.sh)")
	}
	if len(missing) > 0 {
		msg := "integration tests need " + strings.Join(missing, ", ")
		if required {
			return 1, fmt.Errorf("%s (INITOS_INTEGRATION=1 makes that a failure)", msg)
		}
		env.skip = msg
		return -1, nil
	}

	repo, err := filepath.Abs("..")
	if err != nil {
		return 1, err
	}
	env.repo = repo
	work, err := os.MkdirTemp("", workDirPrefix)
	if err != nil {
		return 1, err
	}
	if err := os.WriteFile(filepath.Join(work, workOwnerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return 1, err
	}
	sweepWorkDirs(filepath.Dir(work), work)
	env.bin = filepath.Join(work, "bin", "initos-runtime")
	build := func(extraEnv []string, out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), extraEnv...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", pkg, err, b)
		}
		return nil
	}
	if err := build(nil, env.bin, "./cmd/initos-runtime"); err != nil {
		return 1, err
	}
	// The runtime finds the agent next to its own executable, and the
	// process helper next to the agent.
	if err := build([]string{"CGO_ENABLED=0"}, filepath.Join(work, "bin", "initos-agent"), "./cmd/initos-agent"); err != nil {
		return 1, err
	}
	if err := build([]string{"CGO_ENABLED=0"}, filepath.Join(work, "bin", "initos-exec"), "./cmd/initos-exec"); err != nil {
		return 1, err
	}
	// containerd runs the shim of runtime io.containerd.initos.v2 from its
	// PATH: the private containerds of the tests get this directory first.
	env.shim = filepath.Join(work, "bin", "containerd-shim-initos-v2")
	if err := build(nil, env.shim, "./cmd/containerd-shim-initos-v2"); err != nil {
		return 1, err
	}
	env.cfg = runtime.Config{
		Root:        filepath.Join(work, "state"),
		DataDir:     filepath.Join(work, "data"),
		KernelRoot:  kernelRoot,
		AgentPath:   filepath.Join(work, "bin", "initos-agent"),
		VMM:         "qemu",
		BootTimeout: runtime.Duration(3 * time.Minute),
	}.WithDefaults()
	b, _ := json.Marshal(env.cfg)
	env.config = filepath.Join(work, "config.json")
	if err := os.WriteFile(env.config, b, 0o644); err != nil {
		return 1, err
	}
	t0 := time.Now()
	driver, ird, err := runtime.Prepare(env.cfg)
	if err != nil {
		return 1, fmt.Errorf("preparing kernel and initrd: %w", err)
	}
	fmt.Fprintf(os.Stderr, "integration: %s, initrd %s ready in %s\n", driver, ird, time.Since(t0).Round(time.Millisecond))

	env.busybox = filepath.Join(work, "busybox")
	cmd := exec.Command(filepath.Join(repo, "scripts", "busybox-bundle.sh"), env.busybox, "true")
	if b, err := cmd.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("making the busybox rootfs: %v\n%s", err, b)
	}
	// A user for the uid/gid tests.
	if err := appendFile(filepath.Join(env.busybox, "rootfs", "etc", "passwd"), "user:x:1000:1000::/tmp:/bin/sh\n"); err != nil {
		return 1, err
	}
	// mkfs.btrfs loses device numbers and the root directory's mode: the
	// guest agent restores both; the rootfs test case checks them.
	rootfs := filepath.Join(env.busybox, "rootfs")
	if err := os.Chmod(rootfs, 0o751); err != nil {
		return 1, err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "lib"), 0o755); err != nil {
		return 1, err
	}
	if b, err := exec.Command("mknod", "-m", "0640", filepath.Join(rootfs, "lib", "null-dev"), "c", "1", "3").CombinedOutput(); err != nil {
		return 1, fmt.Errorf("mknod: %v: %s", err, b)
	}
	env.runTimeout = 10 * time.Minute
	return -1, nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}

// vmPrograms are what every VM of the tests needs on the host.
var vmPrograms = []program{
	deb("qemu-system-x86", "qemu-system-x86_64"),
	deb("qemu-system-common", "virtiofsd", vmm.VirtiofsdCandidates...),
	deb("btrfs-progs", "mkfs.btrfs"),
	deb("btrfs-progs", "btrfstune"),
	deb("busybox-static", "busybox", "/bin/busybox"),
}

// program is an external program that tests run, and what installs it.
type program struct {
	name  string   // what messages call it
	from  string   // what installs it
	paths []string // absolute paths or names looked up in PATH, any one will do; none: name
}

// deb is program name from Debian package pkg (scripts/setup.sh installs
// it), found at one of paths (none: name in PATH).
func deb(pkg, name string, paths ...string) program {
	return program{name: name, from: "Debian package " + pkg, paths: paths}
}

// find returns the first of p's paths that is an executable.
func (p program) find() (string, error) {
	paths := p.paths
	if len(paths) == 0 {
		paths = []string{p.name}
	}
	var err error
	for _, c := range paths {
		var path string
		if path, err = exec.LookPath(c); err == nil {
			return path, nil
		}
	}
	return "", err
}

// missingPrograms describes each of progs that is nowhere: its name and
// what installs it.
func missingPrograms(progs ...program) []string {
	var missing []string
	for _, p := range progs {
		if _, err := p.find(); err != nil {
			desc := p.name + " (" + p.from
			if len(p.paths) > 0 {
				desc += "; looked for " + strings.Join(p.paths, ", ")
			}
			missing = append(missing, desc+")")
		}
	}
	return missing
}

// requirePrograms skips t, or with INITOS_INTEGRATION=1 fails it, unless
// every one of progs is there; the message names each missing program and
// the package (or script) that installs it.
func requirePrograms(t testing.TB, progs ...program) {
	t.Helper()
	missing := missingPrograms(progs...)
	if len(missing) == 0 {
		return
	}
	msg := t.Name() + " needs " + strings.Join(missing, ", ") + " (scripts/setup.sh installs the Debian packages)"
	if os.Getenv("INITOS_INTEGRATION") == "1" {
		t.Fatalf("%s; INITOS_INTEGRATION=1 makes that a failure", msg)
	}
	t.Skip(msg)
}

// requireProgram is requirePrograms for program name of Debian package pkg,
// found at one of paths (none: name in PATH), e.g.
// requireProgram(t, "aardvark-dns", "aardvark-dns", "/usr/lib/podman/aardvark-dns").
// It returns the program's path.
func requireProgram(t testing.TB, pkg, name string, paths ...string) string {
	t.Helper()
	p := deb(pkg, name, paths...)
	requirePrograms(t, p)
	path, _ := p.find()
	return path
}

func needVMs(t testing.TB) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// busyboxSpec is the shared busybox bundle's config with args, on a copy
// of its rootfs.
func busyboxSpec(t testing.TB, args ...string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.busybox, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	// A copy of its own: the container writes into its rootfs, as under
	// runc, and the tests run in parallel.
	s.Root.Path = filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", filepath.Join(env.busybox, "rootfs"), s.Root.Path).CombinedOutput(); err != nil {
		t.Fatalf("copying the busybox rootfs: %v\n%s", err, out)
	}
	s.Process.Args = args
	// The tests' processes are root with every capability (they mount,
	// ping): the bundle script writes no capabilities, which the runtime
	// reads, as runc does, as none.
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: allCapabilities, Effective: allCapabilities, Permitted: allCapabilities,
	}
	return &s
}

// engineCapabilities are the engines' default capabilities (podman's and
// containerd's).
var engineCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
	"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
}

// withEngineCaps gives s's process engineCapabilities instead of
// busyboxSpec's every capability: what runs under runc too needs it, as runc
// fails to apply a capability the host's own bounding set lacks ("unable to
// apply caps: operation not permitted"; CAP_SYS_RESOURCE on our hosts).
func withEngineCaps(s *specs.Spec) {
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: engineCapabilities, Effective: engineCapabilities, Permitted: engineCapabilities,
	}
}

// allCapabilities is every capability name of Linux 6.1.
var allCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// writeBundle writes a bundle dir for spec (its root.path is absolute).
func writeBundle(t testing.TB, s *specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type result struct {
	stdout, stderr []byte
	code           int
}

// runtimeCmd runs initos-runtime with the run's config.
func runtimeCmd(t testing.TB, stdin []byte, args ...string) result {
	t.Helper()
	return runtimeCmdWith(t, env.config, stdin, args...)
}

// runtimeCmdWith runs initos-runtime with config file config.
func runtimeCmdWith(t testing.TB, config string, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.bin, append([]string{"--config", config}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running initos-runtime %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("initos-runtime %v did not finish within %s; stderr:\n%s", args, env.runTimeout, errb.Bytes())
	}
	return result{stdout: out.Bytes(), stderr: errb.Bytes(), code: code}
}

// writeConfig writes the run's config changed by edit to a file of t's and
// returns its path.
func writeConfig(t testing.TB, edit func(*runtime.Config)) string {
	t.Helper()
	cfg := env.cfg
	edit(&cfg)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// assertNothingLeft checks that container id left no state, disk or VMM.
func assertNothingLeft(t testing.TB, id string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(env.cfg.Root, id)); err == nil {
		t.Errorf("state dir of %q left behind", id)
	}
	disks, _ := filepath.Glob(filepath.Join(env.cfg.DataDir, "disks", id+"-*"))
	if len(disks) > 0 {
		t.Errorf("disk images of %q left behind: %v", id, disks)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// The VMM and virtiofsd name the state dir; the monitor ends with
		// the id.
		args := bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0})
		if bytes.Contains(b, []byte("/"+id+"/")) || bytes.Contains(args[0], []byte("initos-runtime")) && string(args[len(args)-1]) == id {
			t.Errorf("a process of %q is still running: %s", id, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}
