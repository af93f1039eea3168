package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// basicMount is one of the filesystems the agent mounts at boot.
type basicMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode
}

// basicMounts are mounted in order at boot.
var basicMounts = []basicMount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", 0o555},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
}

// mountBasics mounts basicMounts; one that is already there (EBUSY) is
// fine.
func mountBasics(mkdir func(string, os.FileMode) error, mount func(source, target, fstype string, flags uintptr, data string) error) error {
	for _, m := range basicMounts {
		if err := mkdir(m.target, m.mode); err != nil {
			return fmt.Errorf("creating %q: %w", m.target, err)
		}
		if err := mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %q: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// rerootDir is where reroot binds the initramfs before moving it to /.
const rerootDir = "/.initos-root"

// reroot puts the agent's root on a mount of its own: a recursive bind of
// the initramfs moved onto / (switch_root's move and chroot, without a
// copy). pivot_root(2) refuses a root that is the initramfs itself ("the
// rootfs"), and containers with a mount namespace of their own pivot into
// their root, so that nothing of the agent's tree stays reachable from
// them (a chroot can be escaped).
func reroot() error {
	if err := os.Mkdir(rerootDir, 0o700); err != nil {
		return fmt.Errorf("creating %q: %w", rerootDir, err)
	}
	if err := unix.Mount("/", rerootDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("binding the initramfs on %q: %w", rerootDir, err)
	}
	if err := unix.Chdir(rerootDir); err != nil {
		return fmt.Errorf("entering %q: %w", rerootDir, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %q to /: %w", rerootDir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("entering the moved root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("entering the moved root: %w", err)
	}
	return nil
}

// agent is the running PID 1.
type agent struct {
	version string
	log     *logger
	console *os.File
	cmdline *Cmdline
	reaper  *reaper
	trace   *bootTrace
	// pid1 is the handed-off PID 1 (nil: the agent is PID 1).
	pid1 *pid1
	// linksSet is when the boot last changed the guest's links: the NIC's
	// driver loaded, lo set up (settleLinks).
	linksSet time.Time
}

// Main is the entry point of cmd/initos-agent. Run as /sbin/initos-modprobe
// it is the guest kernel's modprobe; otherwise it must be PID 1 of the
// initrd and never returns. The process helper is a program of its own
// (cmd/initos-exec, package procinit).
func Main(version string) {
	switch {
	case isModprobe():
		os.Exit(runModprobe(os.Args[1:]))
	case isWatcher():
		os.Exit(runWatcher())
	}
	if os.Getpid() != 1 && !isHandoffAgent() {
		fmt.Fprintln(os.Stderr, "initos-agent: must run as PID 1 (/init of the initrd)")
		os.Exit(2)
	}
	a := &agent{version: version, log: newLogger(os.Stderr, false), trace: newBootTrace(bootClock)}
	err := a.boot()
	// boot returns only when something went wrong: say so and power off
	// (PID 1 must not exit: the kernel would panic).
	a.log.Printf("fatal: %v", err)
	a.powerOff("")
}

// boot brings the guest up and runs the mode of the command line.
func (a *agent) boot() error {
	// PID 1 gets only the signals it handles, and Go's default handling of
	// SIGTERM, SIGINT, SIGHUP and SIGQUIT would exit, which panics the
	// kernel. Handled (not ignored: SIG_IGN would be inherited by the
	// container's processes), they are logged.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
	go func() {
		for s := range sigs {
			a.log.Debugf("ignoring signal %v", s)
		}
	}()
	unix.Umask(0o022)

	servingAgent := isHandoffAgent()
	if servingAgent {
		// What PID 1 left it: the basic mounts, the root, stdio on the
		// console. Its descendants' orphans are its own to reap, not the
		// container's PID 1's.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("becoming a subreaper: %w", err)
		}
	} else if err := mountBasics(os.MkdirAll, unix.Mount); err != nil {
		return err
	}
	console, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/console: %w", err)
	}
	// Without /dev/console in the initrd the kernel gave us no stdio: make
	// 0, 1 and 2 the console, so panics and children's output show too.
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(console.Fd()), fd, 0); err != nil {
			return fmt.Errorf("making fd %d the console: %w", fd, err)
		}
	}
	a.console = console
	a.log = newLogger(console, false)

	a.reaper = newReaper()
	a.reaper.Run()

	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	c, err := ParseCmdline(string(data))
	if err != nil {
		return err
	}
	a.cmdline = c
	if c.Mode != ModeSwitchRoot && !servingAgent {
		if err := reroot(); err != nil {
			return err
		}
	}
	if c.Handoff && !servingAgent {
		sock, err := a.startServingAgent()
		if err != nil {
			return err
		}
		return a.awaitHandoff(sock)
	}
	a.log.setDebug(c.Debug)
	a.log.Debugf("initos-agent %s (protocol %s): %s", a.version, agentapi.Version, c)
	a.trace.mark("mounts")

	a.loadModules()
	a.enableModprobe()
	if err := setupNetwork(realNetlink{}, c.Net, 5*time.Second); err != nil {
		a.log.Printf("network: %v", err)
	}
	a.linksSet = time.Now()
	a.trace.mark("network")
	if c.Net != nil && c.Net.DNS.IsValid() {
		a.log.Debugf("resolv.conf for the container: %q", c.Net.ResolvConf())
	}

	switch {
	case servingAgent:
		a.pid1 = newPid1(os.NewFile(handoffFd, "handoff"), a.reaper, a.log)
		return a.serveAgent()
	case c.Mode == ModeSwitchRoot:
		return a.switchRoot()
	case c.Mode == ModeSidecar:
		return a.sidecar()
	default:
		return a.serveAgent()
	}
}

// loadModules loads the requested groups of load.order; failures are
// logged and boot goes on (what needs the module fails later, clearly).
func (a *agent) loadModules() {
	start := time.Now()
	logLoaded := debugLoaded(a.log)
	loaded := func(file string, d time.Duration) {
		logLoaded(file, d)
		a.trace.mark("module " + strings.TrimSuffix(file, ".ko"))
	}
	selected, total, err := loadGroups(ModulesDir, a.cmdline.AllGroups, a.cmdline.Groups, finitModule, loaded)
	// No load.order (total 0): an initrd without modules.
	if err != nil && (total > 0 || !errors.Is(err, fs.ErrNotExist)) {
		a.log.Printf("modules: %v", err)
	}
	if total > 0 {
		a.log.Debugf("modules: %d of %d loaded in %v", selected, total, time.Since(start).Round(time.Millisecond))
	}
}

// newService builds the service of this guest.
func (a *agent) newService() *Service {
	cfg := defaultServiceConfig()
	if c := a.cmdline; c != nil && c.Net != nil && c.Net.DNS.IsValid() {
		cfg.ResolvConf = c.Net.ResolvConf()
	}
	s := newService(cfg, osSystem{}, newHelperLauncher(a.reaper, procinit.Path), a.log)
	if a.pid1 != nil {
		s.setPID1(a.pid1)
	}
	return s
}

// serveAgent is agent mode: serve until the host calls Shutdown.
func (a *agent) serveAgent() error {
	svc := a.newService()
	if err := a.serve(svc, true); err != nil {
		return err
	}
	select {} // Shutdown powers off
}

// sidecar mounts the root disk, runs the program as process "init" on the
// console and serves; the VM powers off when the program exits.
func (a *agent) sidecar() error {
	svc := a.newService()
	done := make(chan exitInfo, 1)
	svc.onExit = func(id string, e exitInfo) {
		if id == "init" {
			done <- e
		}
	}
	ctx := context.Background()
	if _, err := svc.Setup(ctx, &agentapi.SetupRequest{
		RootDevice: a.cmdline.Root,
		RootFstype: a.cmdline.RootFSType,
		Mounts: []*agentapi.Mount{
			// The VM's program: the guest's devices are its own.
			{Destination: "/dev", Type: "devtmpfs", Source: "devtmpfs", Options: []string{"nosuid"}},
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev"}},
		},
	}); err != nil {
		return err
	}
	spec := programSpec(a.cmdline.Program)
	if _, err := svc.createProcess(ctx, "", "init", spec, a.console); err != nil {
		return err
	}
	if _, err := svc.StartProcess(ctx, &agentapi.ProcessRequest{Id: "init"}); err != nil {
		return err
	}
	a.trace.mark("program")
	if err := a.serve(svc, false); err != nil {
		a.log.Printf("serving: %v", err)
	}
	e := <-done
	a.log.Printf("program %q exited with status %d", a.cmdline.Program[0], e.Status)
	_, _ = svc.Shutdown(ctx, &agentapi.Empty{})
	select {} // Shutdown powers off
}

// defaultPath is the PATH of the command line's program.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// programSpec is the process of the command line's program: the system's
// own, it keeps the capabilities the agent has (inheritable and ambient
// empty).
func programSpec(args []string) *specs.Process {
	all := procinit.AllCapabilityNames()
	return &specs.Process{
		Args: args,
		Env:  []string{"PATH=" + defaultPath, "HOME=/", "TERM=linux"},
		Cwd:  "/",
		Capabilities: &specs.LinuxCapabilities{
			Bounding: all, Effective: all, Permitted: all,
		},
	}
}

// linkwatchWindow is how often the kernel handles a device's non-urgent
// link events (net/core/link_watch.c: at most once a second), with a
// margin.
const linkwatchWindow = 1100 * time.Millisecond

// settleLinks waits, in a template with a NIC, until linkwatchWindow has
// passed since the boot last changed a link. A clone resumes with its
// template's jiffies, and with them the window that the template's boot
// opened: the clone's eth0, set up by ConfigureNetwork, would be
// operationally up (its queue taking frames) only once that window had
// passed. Measured under TCG: 260 ms of a pod clone's ConfigureNetwork,
// 6 ms after a template that waited (its build takes that much longer,
// once).
func (a *agent) settleLinks() {
	if _, err := (realNetlink{}).LinkByName(guestNIC); err != nil {
		return
	}
	time.Sleep(linksSettle(a.linksSet, time.Now()))
	a.trace.mark("links")
}

// linksSettle is how long a template saved at now must wait for the
// linkwatch window its boot opened when it last changed a link at set
// (zero: never).
func linksSettle(set, now time.Time) time.Duration {
	if set.IsZero() {
		return 0
	}
	return max(0, set.Add(linkwatchWindow).Sub(now))
}

// serve serves svc on every transport there is and prints "ready". With
// required, a guest without any transport is an error.
func (a *agent) serve(svc *Service, required bool) error {
	if c := a.cmdline; c != nil && c.Template {
		// What every container's Setup does first, once per VM: done
		// before the save, each clone finds it done (35-60 ms of a
		// clone's Setup under TCG, measured).
		svc.setupCgroups()
		cgroupDir := svc.makeCgroup("")
		a.trace.mark("cgroups")
		// The device program of the engines' default rules, which each
		// clone's Setup then attaches instead of loading one.
		if err := svc.preloadDevices(); err != nil {
			a.log.Printf("template: %v", err)
		}
		a.trace.mark("devices")
		warmCodecs()
		a.trace.mark("codecs")
		a.settleLinks()
		// Before "ready", which is when the host saves the template.
		if ss, ok := svc.launcher.(spareStarter); ok && a.pid1 == nil {
			// In the default container's cgroup: the clones' first
			// process is that container's.
			if err := ss.StartSpare(spareWait, cgroupDir); err != nil {
				a.log.Printf("template: %v; its clones start their first process without a spare", err)
			}
			a.trace.mark("spare")
		}
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("creating the ttrpc server: %w", err)
	}
	agentapi.RegisterAgentService(srv, svc)
	if c := a.cmdline; c != nil && c.Template {
		// Before "ready", which is when the host saves the template.
		if err := warmServe(srv, warmServeTimeout); err != nil {
			a.log.Printf("template: %v", err)
		}
		a.trace.mark("serve")
	}
	ctx := context.Background()
	var listeners []net.Listener
	if _, err := os.Stat("/dev/vsock"); err == nil {
		l, err := listenVsock(VsockPort)
		if err != nil {
			a.log.Printf("vsock: %v", err)
		} else {
			listeners = append(listeners, l)
		}
	}
	portWait := 10 * time.Second
	if len(listeners) > 0 {
		portWait = 0 // vsock is there; the port is optional
	}
	dev, err := waitVirtioPort(ctx, "/sys/class/virtio-ports", "/dev", VirtioPortName, portWait)
	if err == nil {
		l := newDeviceListener(deviceAddr{"virtio-serial", dev}, func(ctx context.Context) (streamDevice, error) {
			return openVirtioPort(ctx, dev)
		})
		l.readErr = func(err error) { a.log.Debugf("%s: connection ended: %v", dev, err) }
		listeners = append(listeners, l)
	} else if len(listeners) == 0 {
		a.log.Debugf("%v", err)
	}
	if len(listeners) == 0 {
		if required {
			return errorf(ErrNotFound, "no transport: neither the virtio-serial port %q nor /dev/vsock", VirtioPortName)
		}
		a.log.Printf("no transport: serving nothing")
		return nil
	}
	// Ready from here on: Ping must already see the time.
	a.trace.setReady("transport")
	svc.setReady(a.trace)
	for _, l := range listeners {
		go a.serveOn(srv, l)
	}
	a.log.Printf("ready")
	a.log.Debugf("ready %v after the agent started, serving on %d transports", (a.trace.ready - a.trace.init).Round(time.Millisecond), len(listeners))
	return nil
}

// serveOn runs the server on one listener; it returns only when the
// listener breaks.
func (a *agent) serveOn(srv *ttrpc.Server, l net.Listener) {
	if err := srv.Serve(context.Background(), l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
		a.log.Printf("serving on %s: %v", l.Addr(), err)
	}
}

// switchRootDir is where switchroot mode mounts the root disk: on the
// initramfs itself, since /run moves into the new root.
const switchRootDir = "/newroot"

// switchRoot mounts the root disk, makes it / (util-linux switch_root:
// free the initramfs, move /dev /proc /sys /run, mount --move, chroot) and
// execs the program as PID 1. It returns only on failure.
func (a *agent) switchRoot() error {
	if err := waitDevice(context.Background(), os.Stat, a.cmdline.Root, 10*time.Second); err != nil {
		return err
	}
	newRoot := switchRootDir
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(a.cmdline.Root, newRoot, a.cmdline.RootFSType, 0, ""); err != nil {
		return fmt.Errorf("mounting %q (%s) on %q: %w", a.cmdline.Root, a.cmdline.RootFSType, newRoot, err)
	}
	// /tmp lives in the initramfs and would be out of reach.
	_ = unix.Unmount("/tmp", unix.MNT_DETACH)
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		target := filepath.Join(newRoot, m)
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
				return fmt.Errorf("moving %s to %q: %w", m, target, err)
			}
			continue
		}
		a.log.Printf("switchroot: %s has no %s: unmounting it", newRoot, m)
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	if err := freeInitramfs("/", newRoot); err != nil {
		a.log.Printf("switchroot: freeing the initramfs: %v", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("chdir to %q: %w", newRoot, err)
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %q to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot to the new root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to the new /: %w", err)
	}
	spec := programSpec(a.cmdline.Program)
	path, err := procinit.LookPath(spec.Args[0], defaultPath)
	if err != nil {
		return err
	}
	a.log.Debugf("switchroot: exec %q", spec.Args)
	a.reaper.Stop()
	signal.Reset()
	err = unix.Exec(path, spec.Args, spec.Env)
	return fmt.Errorf("exec %q: %w", path, err)
}

// freeInitramfs removes the initramfs's files (what util-linux's
// switch_root does) so that their memory comes back. It stays on the
// filesystem of root and never enters keep.
func freeInitramfs(root, keep string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return err
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return errorf(ErrFailedPrecondition, "%q is not an initramfs (filesystem type %#x)", root, st.Type)
	}
	var rootStat unix.Stat_t
	if err := unix.Lstat(root, &rootStat); err != nil {
		return err
	}
	var errs []error
	var walk func(dir string)
	walk = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if p == keep {
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				errs = append(errs, err)
				continue
			}
			if st.Dev != rootStat.Dev {
				continue // a mount point
			}
			if e.IsDir() {
				walk(p)
				if err := unix.Rmdir(p); err != nil {
					errs = append(errs, fmt.Errorf("rmdir %q: %w", p, err))
				}
				continue
			}
			if err := unix.Unlink(p); err != nil {
				errs = append(errs, fmt.Errorf("unlink %q: %w", p, err))
			}
		}
	}
	walk(root)
	return errors.Join(errs...)
}

// powerOff syncs, unmounts the root filesystem (lazily when busy) and
// powers the VM off. It does not return.
func (a *agent) powerOff(reason string) {
	if reason != "" {
		a.log.Printf("powering off: %s", reason)
	}
	unix.Sync()
	for _, m := range []string{RootfsDir, switchRootDir} {
		if err := unix.Unmount(m, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	unix.Sync()
	for {
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			a.log.Printf("power off: %v", err)
		}
		time.Sleep(time.Second)
	}
}
