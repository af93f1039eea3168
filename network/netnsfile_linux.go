package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewNetns creates a network namespace kept alive by a bind mount on
// path (as `ip netns add` does), for engines whose hooks configure the
// namespace before the container's VM starts (nerdctl's CNI hook). On
// error nothing is left.
func NewNetns(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("creating network namespace file %q: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread that unshares is never reused: locked, it exits with
		// the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unsharing the network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mounting %s on %q: %w", src, path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// RemoveNetns unmounts and removes a namespace made by NewNetns; its
// interfaces (veths, taps) go with it. A missing one is not an error.
func RemoveNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting network namespace %q: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing network namespace file %q: %w", path, err)
	}
	return nil
}

// LoopbackUp sets lo up in the network namespace nsPath: a new namespace's
// loopback starts down.
func LoopbackUp(nsPath string) error {
	err := withHandle(nsPath, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("looking up lo: %w", err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("setting lo up: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", nsPath, err)
	}
	return nil
}

// withHandle runs f in the network namespace nsPath with a netlink handle
// there.
func withHandle(nsPath string, f func(h *netlink.Handle) error) error {
	return inNetns(nsPath, func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("opening netlink handle in %q: %w", nsPath, err)
		}
		defer h.Close()
		return f(h)
	})
}
