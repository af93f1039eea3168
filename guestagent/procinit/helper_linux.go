package procinit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Path is the helper's program in the initrd (cmd/initos-exec), and Arg0
// the argv[0] the agent starts it with.
const (
	Path = "/sbin/initos-exec"
	Arg0 = "initos-exec"
)

// The helper's descriptors besides stdio.
const (
	ConfigFd = 3 // Config as MarshalBinary encodes it, then EOF
	StartFd  = 4 // one byte: exec now; EOF: give up
	StatusFd = 5 // "ready\n" or "error <text>\n"; close-on-exec
)

// Status lines of the helper.
const (
	Ready       = "ready"
	ErrorPrefix = "error "
)

func init() {
	// The helper execs from its main thread: namespaces made for the exec
	// are that thread's, and a handed-off PID 1's watcher traces that
	// thread (guestagent/handoff_linux.go). Locking in init runs main on
	// the startup thread.
	if IsHelper() {
		goruntime.LockOSThread()
		// A helper lives until its exec and allocates little: a
		// collection would only run the collector's code (under TCG, its
		// first run in a clone costs tens of ms) and free nothing needed.
		debug.SetGCPercent(-1)
	}
}

// IsHelper reports whether this process was started as the process helper.
func IsHelper() bool { return len(os.Args) > 0 && os.Args[0] == Arg0 }

// Main is the helper's whole life: it prepares the process, reports
// ready, waits for the start byte and execs. It returns only on failure,
// with the exit code 127, after telling the agent why on fd 5.
func Main() int {
	// Capabilities, keepcaps and no_new_privs belong to a thread: the one
	// that sets them must be the one that execs.
	goruntime.LockOSThread()
	cfgFd, startFd, statusFd := ConfigFd, StartFd, StatusFd
	if c, st, stat, ok, err := HandoffFds(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Arg0, err)
		return 127
	} else if ok {
		cfgFd, startFd, statusFd = c, st, stat
	}
	if c, st, stat, ok, gone, err := SpareFds(); err != nil {
		// Stderr is /dev/null or the process's: the agent sees the exit.
		fmt.Fprintf(os.Stderr, "%s: %v\n", Arg0, err)
		return 127
	} else if gone {
		return 0
	} else if ok {
		cfgFd, startFd, statusFd = c, st, stat
	}
	for _, fd := range []int{cfgFd, startFd, statusFd} {
		unix.CloseOnExec(fd) // none of them may reach the process
	}
	status := os.NewFile(uintptr(statusFd), "status")
	fail := func(err error) int {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		_, _ = status.WriteString(ErrorPrefix + msg + "\n")
		return 127
	}

	cfgFile := os.NewFile(uintptr(cfgFd), "config")
	b, err := io.ReadAll(io.LimitReader(cfgFile, maxConfigSize+1))
	cfgFile.Close()
	if err != nil {
		return fail(fmt.Errorf("reading the process configuration: %w", err))
	}
	var cfg Config
	if err := cfg.UnmarshalBinary(b); err != nil {
		return fail(err)
	}
	if len(cfg.Process.Args) == 0 {
		return fail(errors.New("process args must not be empty"))
	}
	path, err := prepareExec(&cfg)
	if err != nil {
		return fail(err)
	}
	if _, err := status.WriteString(Ready + "\n"); err != nil {
		return 127 // the agent is gone
	}

	start := os.NewFile(uintptr(startFd), "start")
	var one [1]byte
	if n, _ := start.Read(one[:]); n != 1 {
		return 127 // the agent dropped the process before starting it
	}
	start.Close()
	err = unix.Exec(path, cfg.Process.Args, cfg.Process.Env)
	return fail(fmt.Errorf("exec %q: %w", path, err))
}

// prepareExec does everything before the exec that can fail, in the order
// that keeps the privileges each step needs, as runc's init: oom_score_adj,
// chroot, cwd, rlimits, session and terminal, the bounding set, groups, gid
// and uid (keeping the permitted capabilities), umask, the other
// capability sets, the PATH lookup, then no_new_privs. It returns the path
// to exec. It runs on the thread that execs (Main locks it).
func prepareExec(cfg *Config) (string, error) {
	p := &cfg.Process
	if cfg.UnshareMount {
		// This thread's (CLONE_FS goes with it): the one that execs.
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return "", fmt.Errorf("making the mount namespace: %w", err)
		}
	}
	if p.OOMScoreAdj != nil {
		// config.md "oomScoreAdj": "adjusts the oom-killer score in
		// [pid]/oom_score_adj for the process's [pid] in a proc pseudo-filesystem."
		// Before anything drops CAP_SYS_RESOURCE (lowering it needs it).
		adj := strconv.Itoa(*p.OOMScoreAdj)
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(adj), 0); err != nil {
			return "", fmt.Errorf("writing %s to /proc/self/oom_score_adj: %w", adj, err)
		}
	}
	if cfg.Pivot {
		// Nothing this namespace mounts reaches the agent's.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return "", fmt.Errorf("making the container's mounts private: %w", err)
		}
	}
	if cfg.NewCgroupns {
		// config-linux.md cgroup namespace: the container sees its own
		// cgroup as the root, as under runc.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return "", fmt.Errorf("making the cgroup namespace: %w", err)
		}
		if cfg.CgroupMount != "" {
			flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
			if cfg.CgroupReadonly {
				flags |= unix.MS_RDONLY
			}
			// The agent's mount of the same hierarchy first: a second
			// mount of it on one mount point is EBUSY.
			if err := unix.Unmount(cfg.CgroupMount, unix.MNT_DETACH); err != nil {
				return "", fmt.Errorf("unmounting the agent's cgroup2 on %q: %w", cfg.CgroupMount, err)
			}
			if err := unix.Mount("cgroup2", cfg.CgroupMount, "cgroup2", flags, ""); err != nil {
				return "", fmt.Errorf("mounting the cgroup namespace's cgroup2 on %q: %w", cfg.CgroupMount, err)
			}
		}
	}
	if cfg.Hostname != "" {
		// config.md "hostname": in the container's own UTS namespace.
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return "", fmt.Errorf("setting hostname %q: %w", cfg.Hostname, err)
		}
	}
	// Through the agent's /proc, before the chroot: a sysctl of the IPC
	// or UTS namespace is the writer's.
	if err := WriteSysctls(func(p string, b []byte) error { return os.WriteFile(p, b, 0) }, cfg.Sysctls, nil); err != nil {
		return "", err
	}
	if cfg.MountProc != "" {
		// runc mounts the spec's mounts under /proc on the container's
		// one /proc; here the spec's is covered by this one, so they are
		// cloned first and moved onto it.
		kept, err := keepMounts(realTreeOps, cfg.ProcMounts)
		if err != nil {
			return "", err
		}
		if err := unix.Mount("proc", cfg.MountProc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			closeKept(realTreeOps, kept)
			return "", fmt.Errorf("mounting the PID namespace's proc on %q: %w", cfg.MountProc, err)
		}
		if err := restoreMounts(realTreeOps, kept); err != nil {
			return "", err
		}
		if _, err := MaskPaths(osMounter{}, cfg.Rootfs, cfg.Masked, cfg.Readonly, "/proc"); err != nil {
			return "", err
		}
	}
	if cfg.Console != "" {
		if err := bindConsole(cfg.Console); err != nil {
			return "", err
		}
	}
	if cfg.Pivot && cfg.Rootfs != "" {
		if err := pivotRoot(cfg.Rootfs); err != nil {
			return "", err
		}
		if cfg.RootPropagation != 0 {
			if err := unix.Mount("", "/", "", uintptr(cfg.RootPropagation), ""); err != nil {
				return "", fmt.Errorf("setting the root's propagation: %w", err)
			}
		}
	} else if cfg.Rootfs != "" {
		if err := unix.Chroot(cfg.Rootfs); err != nil {
			return "", fmt.Errorf("chroot to %q: %w", cfg.Rootfs, err)
		}
		if err := unix.Chdir("/"); err != nil {
			return "", fmt.Errorf("chdir to / of the root filesystem: %w", err)
		}
	}
	if err := enterCwd(p.Cwd); err != nil {
		return "", err
	}
	// runc's init: "if we didn't get HOME already, set it based on the
	// user's HOME" from the container's /etc/passwd, else "/". Read as
	// root, inside the root, before the user switch.
	p.Env = withHome(p.Env, p.UID, func() []byte {
		b, _ := os.ReadFile("/etc/passwd")
		return b
	})
	for _, r := range p.Rlimits {
		// syscall.Setrlimit (not the raw syscall) so that Go's exec does
		// not restore its saved RLIMIT_NOFILE afterwards.
		if err := syscall.Setrlimit(r.Resource, &syscall.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return "", fmt.Errorf("setting %s to %d:%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	if _, err := unix.Setsid(); err != nil {
		return "", fmt.Errorf("setsid: %w", err)
	}
	if cfg.Ctty || cfg.TryCtty {
		if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil && cfg.Ctty {
			return "", fmt.Errorf("making the terminal the controlling terminal: %w", err)
		}
	}
	if len(cfg.Seccomp) > 0 && !p.NoNewPrivileges {
		// Without no_new_privs, installing a filter needs
		// CAP_SYS_ADMIN: now, before the capabilities go (runc's order).
		if err := installSeccomp(cfg.Seccomp, cfg.SeccompFlags); err != nil {
			return "", err
		}
	}
	// config.md "capabilities": "an object containing arrays that specifies
	// the sets of capabilities for the process." The bounding set first,
	// while CAP_SETPCAP is still there; absent capabilities are empty sets,
	// as in runc.
	if err := dropBounding(p.Caps, p.LastCap); err != nil {
		return "", err
	}
	// Keep the permitted set across the switch from uid 0; applyCaps then
	// sets each set to the spec's.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return "", fmt.Errorf("setting keepcaps before the user switch: %w", err)
	}
	groups := make([]int, len(p.AdditionalGids))
	for i, g := range p.AdditionalGids {
		groups[i] = int(g)
	}
	// syscall's Setgroups/Setgid/Setuid change every thread of the process.
	if err := syscall.Setgroups(groups); err != nil {
		return "", fmt.Errorf("setting additional groups %v: %w", p.AdditionalGids, err)
	}
	if err := syscall.Setgid(int(p.GID)); err != nil {
		return "", fmt.Errorf("setting gid %d: %w", p.GID, err)
	}
	if err := syscall.Setuid(int(p.UID)); err != nil {
		return "", fmt.Errorf("setting uid %d: %w", p.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return "", fmt.Errorf("clearing keepcaps after the user switch: %w", err)
	}
	if p.Umask != nil {
		unix.Umask(int(*p.Umask))
	}
	if err := applyCaps(p.Caps); err != nil {
		return "", err
	}
	path, err := LookPath(p.Args[0], envValue(p.Env, "PATH"))
	if err != nil {
		return "", err
	}
	if p.NoNewPrivileges {
		// config.md "noNewPrivileges": "setting noNewPrivileges to true
		// prevents the process from gaining additional privileges."
		// The last step before the exec (only the start byte is awaited).
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return "", fmt.Errorf("setting no_new_privs on the process: %w", err)
		}
		if len(cfg.Seccomp) > 0 {
			// As late as can be: the filter holds from here on.
			if err := installSeccomp(cfg.Seccomp, cfg.SeccompFlags); err != nil {
				return "", err
			}
		}
	}
	return path, nil
}

// pivotRoot makes rootfs the root of the helper's mount namespace and
// detaches the old one (runc's pivot_root(".", ".")): unlike a chroot,
// nothing of the agent's tree stays reachable.
func pivotRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("entering %q: %w", rootfs, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root to %q: %w", rootfs, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the agent's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir to / of the root filesystem: %w", err)
	}
	return nil
}

// enterCwd changes to the process's working directory, creating it when
// missing as runc does.
func enterCwd(cwd string) error {
	err := unix.Chdir(cwd)
	if errors.Is(err, unix.ENOENT) {
		if mkErr := os.MkdirAll(cwd, 0o755); mkErr != nil {
			return fmt.Errorf("creating cwd %q: %w", cwd, mkErr)
		}
		err = unix.Chdir(cwd)
	}
	if err != nil {
		return fmt.Errorf("chdir to cwd %q: %w", cwd, err)
	}
	return nil
}

// envValue is the value of the first key=value entry of env.
func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// LookPath finds file like execvp and runc: a name with a '/' is used as it
// is; another is searched in the directories of path, an empty entry
// meaning the working directory. It runs inside the chroot.
func LookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		if err := isExecutable(file); err != nil {
			return "", fmt.Errorf("executable %q: %w", file, err)
		}
		return file, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		err := isExecutable(p)
		if err == nil {
			if !filepath.IsAbs(p) && !strings.HasPrefix(p, ".") {
				p = "./" + p
			}
			return p, nil
		}
		if errors.Is(err, fs.ErrPermission) && denied == nil {
			denied = fmt.Errorf("executable %q: %w", p, err)
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", fmt.Errorf("exec: %q: %w", file, ErrExecutableNotFound)
}

// isExecutable checks that p is a regular file with an execute bit.
func isExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		// execve(2) says EACCES, and engines map "permission denied"
		// to exit status 126 (runc's wording).
		return fmt.Errorf("is a directory: %w", fs.ErrPermission)
	}
	if fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// bindConsole binds the helper's terminal (stdin) on path, made as an
// empty file when missing: the container's /dev/console, where an init
// system writes its messages.
func bindConsole(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|unix.O_NOFOLLOW, 0o666)
	if err != nil && !errors.Is(err, unix.ENXIO) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("creating the console %q: %w", path, err)
	}
	if f != nil {
		f.Close()
	}
	// By its path: the descriptor's mount is the agent's namespace's,
	// which a bind from this one refuses (EINVAL).
	tty, err := os.Readlink("/proc/self/fd/0")
	if err != nil {
		return fmt.Errorf("finding the terminal: %w", err)
	}
	if err := unix.Mount(tty, path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding the terminal %q on %q: %w", tty, path, err)
	}
	return nil
}
