package guestagent

import (
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSetLinkUp sets lo up by ioctl in a network namespace of its own
// (a new one's lo is down) and reads the flag back through netlink.
func TestSetLinkUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace")
	}
	type result struct {
		before, after net.Flags
		err           error
		missing       error
	}
	done := make(chan result)
	go func() {
		// The thread stays in the namespace and ends with the goroutine
		// (never unlocked).
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNET); r.err != nil {
			return
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			r.err = err
			return
		}
		r.before = lo.Flags
		if r.err = setLinkUp("lo"); r.err != nil {
			return
		}
		if lo, r.err = net.InterfaceByName("lo"); r.err != nil {
			return
		}
		r.after = lo.Flags
		r.missing = setLinkUp("nosuch0")
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.before&net.FlagUp != 0 {
		t.Fatalf("a new namespace's lo is already up (%v): the test proves nothing", r.before)
	}
	if r.after&net.FlagUp == 0 {
		t.Errorf("lo after setLinkUp: %v, want up", r.after)
	}
	if r.missing == nil {
		t.Error("setLinkUp of a missing interface: no error")
	}
}
