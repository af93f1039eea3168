package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// workDirPrefix names the work directory of each run (TestMain's).
const workDirPrefix = "initos-integration-"

// workOwnerFile holds the pid of the run that made its work directory.
const workOwnerFile = "owner.pid"

// sweepWorkDirs removes what runs which ended without their cleanup left
// (a killed `go test`, an interrupted bench) in tmp: their work directories
// (each holds its binaries, images and caches, 200+ MB) and the processes
// still running from them (VMs, monitors, shims, containerd: they keep the
// host's CPUs busy, which slows every VM of the next run). A directory is
// a dead run's when its owner's pid is gone; its processes are those that
// run one of its programs or name it in their command line or
// environment (runLeftBy), and they are killed; the mounts under it are
// the run's too (a root share whose monitor was killed), and are detached
// (unmountLeftOver). The directory is then removed unless something else
// still uses it (a process working there or holding a file in it: a shell
// someone left there; a mount that would not go). A directory with no
// owner file (not this code's) stays. What it kills, unmounts, removes or
// leaves is said on stderr.
func sweepWorkDirs(tmp, own string) {
	dirs, err := filepath.Glob(filepath.Join(tmp, workDirPrefix+"*"))
	if err != nil {
		return
	}
	for _, dir := range dirs {
		if dir == own {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, workOwnerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processExists(pid) {
			continue
		}
		killLeftOver(dir)
		unmountLeftOver(dir)
		if why := workDirInUse(dir); why != "" {
			fmt.Fprintf(os.Stderr, "integration: %s, left by an interrupted run, is still in use (%s): not removed\n", dir, why)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "integration: removing %s, left by an interrupted run: %v\n", dir, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "integration: removed %s, left by an interrupted run\n", dir)
	}
}

// killLeftOver kills the processes a dead run left running from dir
// (runLeftBy) and waits a while for them to end.
func killLeftOver(dir string) {
	pids := runLeftBy(dir)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			fmt.Fprintf(os.Stderr, "integration: killed process %d, left running by an interrupted run from %s\n", pid, dir)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !slices.ContainsFunc(pids, processExists) {
			return
		}
	}
}

// unmountLeftOver detaches the mounts a dead run left under dir (a
// container's root share whose monitor was killed), the deepest first, so
// that removing dir cannot reach through one into what it shows (the
// bundle's rootfs).
func unmountLeftOver(dir string) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return
	}
	slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
	for _, m := range mounts {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil {
			fmt.Fprintf(os.Stderr, "integration: unmounting %s, left by an interrupted run: %v\n", m.Mountpoint, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "integration: unmounted %s, left by an interrupted run\n", m.Mountpoint)
	}
}

// runLeftBy lists the processes that run a program in dir or name dir in
// their command line or environment (but PWD): a run's VMs (their kernel
// is in its data directory), monitors and shims (its binaries), and the
// containerd it started (its PATH names its shims' directory). Not this
// process.
func runLeftBy(dir string) []int {
	var pids []int
	for _, pid := range otherPids() {
		proc := filepath.Join("/proc", strconv.Itoa(pid))
		exe, _ := os.Readlink(filepath.Join(proc, "exe"))
		cmdline, _ := os.ReadFile(filepath.Join(proc, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join(proc, "environ"))
		if strings.HasPrefix(exe, dir+"/") || namesPath(cmdline, dir) || namesPath(withoutPWD(environ), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// withoutPWD is an environment without its PWD and OLDPWD: a shell
// started in a directory names it there, and working in a directory is
// not being of the run (workDirInUse keeps the directory for it).
func withoutPWD(environ []byte) []byte {
	var out [][]byte
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if !bytes.HasPrefix(kv, []byte("PWD=")) && !bytes.HasPrefix(kv, []byte("OLDPWD=")) {
			out = append(out, kv)
		}
	}
	return bytes.Join(out, []byte{0})
}

// namesPath reports whether b, NUL-separated strings (a command line, an
// environment), names path or a file under it: path ends where a string,
// a list (:, =, ,) or a path (/) goes on. (/tmp/x-1 does not name /tmp/x.)
func namesPath(b []byte, path string) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(path))
		if j < 0 {
			return false
		}
		end := i + j + len(path)
		if end == len(b) || strings.IndexByte("\x00/:=,", b[end]) >= 0 {
			return true
		}
		i = i + j + 1
	}
}

// processExists reports whether pid is a process (one of another user's
// counts: kill(2) then fails with EPERM).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// workDirInUse says what still uses dir: a mount under it, or a process
// whose command line names it or that holds a file or its working
// directory in it (processesOf) ("": nothing).
func workDirInUse(dir string) string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return "reading the mounts: " + err.Error()
	}
	if len(mounts) > 0 {
		return "a mount on " + mounts[0].Mountpoint
	}
	if procs := processesOf(dir, dir); len(procs) > 0 {
		return "process " + procs[0]
	}
	return ""
}
