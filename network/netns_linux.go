package network

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs fn on a fresh OS thread that has joined the network namespace
// at path. The thread is never switched back: it stays locked and exits with
// its goroutine, so no other goroutine can ever run in the wrong namespace.
func inNetns(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %q: %w: %w", path, errNetnsUnavailable, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering network namespace %q: %w: %w", path, errNetnsUnavailable, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// errNetnsUnavailable marks the errors of opening and entering the namespace,
// as opposed to errors of the work done inside it.
var errNetnsUnavailable = errors.New("namespace unavailable")
