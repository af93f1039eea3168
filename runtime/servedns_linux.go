package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// procRoot is /proc; tests replace it.
var procRoot = "/proc"

// attachServed binds source (its whole tree when rec) on entry, a path
// inside the directory served that a running virtiofsd serves, in
// virtiofsd's mount namespace only: a clone of the source's mount tree
// (open_tree, or the one trees holds), made read-only ("ro": its top; "rro": every mount of it)
// before it is attached there (move_mount from a thread that joined that
// namespace). The host's namespace keeps a plain directory at entry;
// removing it detaches the mount in virtiofsd's namespace.
func attachServed(served, source, entry string, rec, ro, rro bool, trees mountTrees) error {
	rel, err := filepath.Rel(served, entry)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("share entry %q is not inside the served directory %q", entry, served)
	}
	pid, err := virtiofsdPid(procRoot, served)
	if err != nil {
		return err
	}
	// A member's own monitor may have made the clone already (member.go).
	f := trees.take(source, rec)
	if f == nil {
		if f, err = openTree(source, rec); err != nil {
			return err
		}
	}
	defer f.Close()
	tree := int(f.Fd())
	// Private: a clone of a shared mount would be the source's peer, and
	// the host's later mounts below it would reach the guest (the entry's
	// propagation is not a slave's).
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Propagation: unix.MS_PRIVATE}); err != nil {
		return fmt.Errorf("making the clone of %q private: %w", source, err)
	}
	for _, a := range []struct {
		on        bool
		recursive bool
	}{{ro, false}, {rro, true}} {
		if !a.on {
			continue
		}
		at := uint(unix.AT_EMPTY_PATH)
		if a.recursive {
			at |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(tree, "", at, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("making the clone of %q read-only: %w", source, err)
		}
	}
	// The target as virtiofsd sees it, resolved in its root.
	root, err := unix.Open(filepath.Join(procRoot, strconv.Itoa(pid), "root"), unix.O_PATH|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("opening the root of virtiofsd (pid %d): %w", pid, err)
	}
	defer unix.Close(root)
	servedIn, err := servedPathIn(procRoot, pid, served)
	if err != nil {
		return err
	}
	target, err := unix.Openat2(root, filepath.Join(servedIn, rel), &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("finding share entry %q in virtiofsd's view (pid %d): %w", rel, pid, err)
	}
	defer unix.Close(target)
	ns, err := unix.Open(filepath.Join(procRoot, strconv.Itoa(pid), "ns", "mnt"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the mount namespace of virtiofsd (pid %d): %w", pid, err)
	}
	defer unix.Close(ns)
	done := make(chan error, 1)
	go func() {
		// setns(2) of a mount namespace changes this thread's root and
		// cwd: the thread is never unlocked, so it ends with the goroutine.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unsharing the thread's filesystem context: %w", err)
			return
		}
		if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("joining the mount namespace of virtiofsd (pid %d): %w", pid, err)
			return
		}
		if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
			done <- fmt.Errorf("attaching the clone of %q in virtiofsd's namespace: %w", source, err)
			return
		}
		done <- nil
	}()
	return <-done
}

// servedPathIn is where virtiofsd (pid) sees the directory it serves:
// "/" once it has pivoted into it (its sandbox), else the path itself.
func servedPathIn(proc string, pid int, served string) (string, error) {
	st, err := os.Stat(served)
	if err != nil {
		return "", err
	}
	rt, err := os.Stat(filepath.Join(proc, strconv.Itoa(pid), "root"))
	if err != nil {
		return "", fmt.Errorf("virtiofsd (pid %d): %w", pid, err)
	}
	if os.SameFile(st, rt) {
		return "/", nil
	}
	return served, nil
}

// virtiofsdPid finds the virtiofsd process that serves dir from a mount
// namespace of its own (its sandbox: Debian's C virtiofsd forks one, in a
// namespace where dir is its root; the Rust one too), by its command line
// (-o source=DIR, or --shared-dir=DIR) under the proc filesystem proc. It
// looks again for a moment (virtiofsdWait) while there is none.
func virtiofsdPid(proc, dir string) (int, error) {
	var err error
	for i := 0; ; i++ {
		var pid int
		if pid, err = virtiofsdOnce(proc, dir); err == nil {
			return pid, nil
		}
		if i >= virtiofsdTries {
			return 0, err
		}
		time.Sleep(virtiofsdRetry)
	}
}

// virtiofsdTries and virtiofsdRetry bound virtiofsdPid's search.
var (
	virtiofsdTries = 40
	virtiofsdRetry = 50 * time.Millisecond
)

// virtiofsdOnce is one search of virtiofsdPid.
func virtiofsdOnce(proc, dir string) (int, error) {
	self, err := os.Readlink(filepath.Join(proc, "self", "ns", "mnt"))
	if err != nil {
		return 0, fmt.Errorf("reading this process's mount namespace: %w", err)
	}
	c := strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(dir)
	want := map[string]bool{"source=" + c: true, "--shared-dir=" + dir: true}
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	var seen []string // the servers found that do not qualify, and why
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		found := false
		args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
		for i, a := range args {
			if want[string(a)] || string(a) == "--shared-dir" && i+1 < len(args) && string(args[i+1]) == dir {
				found = true
			}
		}
		if !found {
			continue
		}
		ns, err := os.Readlink(filepath.Join(proc, e.Name(), "ns", "mnt"))
		switch {
		case err != nil:
			seen = append(seen, fmt.Sprintf("pid %d: %v", pid, err))
		case ns == self:
			seen = append(seen, fmt.Sprintf("pid %d: in this process's mount namespace", pid))
		default:
			return pid, nil
		}
	}
	if len(seen) > 0 {
		return 0, fmt.Errorf("no virtiofsd serving %q from a mount namespace of its own (%s): %w", dir, strings.Join(seen, "; "), errNoVirtiofsd)
	}
	return 0, fmt.Errorf("no virtiofsd serving %q: %w", dir, errNoVirtiofsd)
}

// errNoVirtiofsd: the share's file server was not found.
var errNoVirtiofsd = errors.New("virtiofsd not found")
