package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
)

// workDirPrefix names the work directory of each run (TestMain's).
const workDirPrefix = "initos-integration-"

// workOwnerFile holds the pid of the run that made its work directory.
const workOwnerFile = "owner.pid"

// sweepWorkDirs removes the work directories (in tmp) that runs which
// ended without their cleanup left (a killed `go test`, an interrupted
// bench: each holds its binaries, images and caches, 200+ MB): those whose
// owner's pid is gone, with no mount under them and no process naming
// them in its command line or working there. A directory still in use,
// or with no owner file (not this code's), stays; what stays for a use is
// said on stderr.
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
