package runtime

import (
	"context"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/procview"
)

// The container's view. Engines treat the pid create reports (the
// monitor's) as the container's process: podman cp of a running container
// joins its mount namespace and copies from and to "/" there, and podman
// top's psgo reads /proc there. Under runc that namespace's root is the
// container's rootfs; the monitor's own is the host's, so `podman cp f
// C:/etc/passwd` would write the host's file. So once the container is
// created, the monitor's main thread (the thread group leader, whose
// namespaces and root /proc/<pid>/ns/mnt and /proc/<pid>/root show) moves
// into a mount namespace of its own whose root is the bundle's rootfs, with
// the spec's host bind mounts at their destinations and a /proc that lists
// the container's processes in its VM (package procview, served by the
// monitor from the agent's listing; a /proc of the monitor's PID namespace
// where the host has no FUSE); it does nothing else from then on. The
// monitor's work (VM, sockets, state, hooks) goes on in goroutines on the
// other threads, which keep the host's view: the Go runtime starts new
// threads from a template thread, never from a locked one.

// viewRequest asks the main thread to enter the container's view.
type viewRequest struct {
	rootfs string
	mounts []specs.Mount
	done   chan viewResult
}

// viewResult is how the main thread entered the view.
type viewResult struct {
	proc viewProc
	err  error
}

// viewProc is the view's /proc: fd is the connection of its procview
// mount, for the monitor to serve; -1 when the view has a procfs instead
// (no /proc in the rootfs, or fallback says why FUSE could not be used).
type viewProc struct {
	fd       int
	fallback error
}

// MonitorMain is RunMonitor for the monitor process: it must be called on
// the main goroutine, which this package's init locks to the main thread
// (mainthread_linux.go), runs RunMonitor on another goroutine and enters the
// container's view when RunMonitor asks for it, before create returns.
func MonitorMain(ctx context.Context, c Config, o MonitorOptions) int {
	views := make(chan viewRequest)
	o.enterView = func(rootfs string, mounts []specs.Mount) (viewProc, error) {
		r := viewRequest{rootfs: rootfs, mounts: mounts, done: make(chan viewResult, 1)}
		views <- r
		res := <-r.done
		return res.proc, res.err
	}
	status := make(chan int, 1)
	go func() { status <- RunMonitor(ctx, c, o) }()
	for {
		select {
		case r := <-views:
			r.done <- enterMonitorView(r)
		case s := <-status:
			return s
		}
	}
}

// enterMonitorView enters the view r asks for, its /proc served by
// procview when the host has FUSE.
func enterMonitorView(r viewRequest) viewResult {
	res := viewResult{proc: viewProc{fd: -1}}
	// Opened before the pivot: the rootfs's /dev has no fuse.
	fd, err := procview.Open()
	if err != nil {
		res.proc.fallback = err
	}
	res.err = EnterContainerView(r.rootfs, r.mounts, func(target string) error {
		if fd < 0 {
			return MountProcfs(target)
		}
		if err := procview.Mount(fd, target); err != nil {
			unix.Close(fd)
			fd = -1
			res.proc.fallback = err
			return MountProcfs(target)
		}
		res.proc.fd, fd = fd, -1
		return nil
	})
	if fd >= 0 {
		unix.Close(fd) // no /proc in the rootfs, or an error before it
	}
	if res.err != nil && res.proc.fd >= 0 {
		unix.Close(res.proc.fd)
		res.proc.fd = -1
	}
	return res
}

// EnterContainerView moves the calling thread into a new mount namespace
// whose root is rootfs, with mounts' host binds at their destinations
// (resolved inside rootfs: a symlink in the image never leads out of it)
// and a /proc mounted by mountProc when the rootfs has that directory.
// Destinations that do not exist are skipped (the agent made every one it
// mounted). On error the thread may be left in the new namespace: the
// monitor then fails the create and ends.
func EnterContainerView(rootfs string, mounts []specs.Mount, mountProc func(target string) error) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("container view: unsharing the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("container view: making mounts private: %w", err)
	}
	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("container view: binding %q on itself: %w", rootfs, err)
	}
	root, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container view: opening %q: %w", rootfs, err)
	}
	defer unix.Close(root)
	for _, m := range mounts {
		if !sharedBind(m) {
			continue
		}
		if err := bindInView(root, m); err != nil {
			return fmt.Errorf("container view: %w", err)
		}
	}
	if err := unix.Fchdir(root); err != nil {
		return fmt.Errorf("container view: entering %q: %w", rootfs, err)
	}
	// runc's way: the old root ends up on top of the new one and is
	// detached at once; no directory in the rootfs is needed for it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("container view: pivot_root to %q: %w", rootfs, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("container view: detaching the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("container view: %w", err)
	}
	if fi, err := os.Lstat("/proc"); err == nil && fi.IsDir() {
		if err := mountProc("/proc"); err != nil {
			return fmt.Errorf("container view: %w", err)
		}
	}
	return nil
}

// MountProcfs mounts a proc file system of the caller's PID namespace on
// target.
func MountProcfs(target string) error {
	if err := unix.Mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting a procfs on %q: %w", target, err)
	}
	return nil
}

// bindInView binds host mount m's source on its destination under the
// root open at root.
func bindInView(root int, m specs.Mount) error {
	flags := uintptr(unix.MS_BIND)
	if hasOption(m.Options, "rbind") {
		flags |= unix.MS_REC
	}
	err := atInView(root, m.Destination, func(target string) error {
		return unix.Mount(m.Source, target, "", flags, "")
	})
	if err != nil || !hasOption(m.Options, "ro") {
		return err
	}
	// Opened again: the first fd names the mount under the new bind.
	return atInView(root, m.Destination, func(target string) error {
		return unix.Mount("", target, "", flags|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	})
}

// atInView runs mount on the path of dest resolved under root (nothing
// when dest does not exist).
func atInView(root int, dest string, mount func(target string) error) error {
	fd, err := unix.Openat2(root, dest, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolving %q in the rootfs: %w", dest, err)
	}
	defer unix.Close(fd)
	if err := mount(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil {
		return fmt.Errorf("mounting on %q: %w", dest, err)
	}
	return nil
}
