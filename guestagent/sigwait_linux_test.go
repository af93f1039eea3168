package guestagent

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSigCaught(t *testing.T) {
	status := "Name:\ttop\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000004002\n"
	for sig, want := range map[unix.Signal]bool{unix.SIGINT: true, unix.SIGTERM: true, unix.SIGHUP: false, unix.SIGUSR1: false} {
		if got, err := sigCaught(status, sig); err != nil || got != want {
			t.Errorf("sigCaught(%v) = %t, %v; want %t", sig, got, err, want)
		}
	}
	if _, err := sigCaught("Name:\ttop\n", unix.SIGTERM); err == nil {
		t.Error("a status without SigCgt: no error")
	}
}

// TestAwaitHandler: a signal to a container's init that does not catch it
// yet waits, within the grace after its start, until it does; past the
// grace, or for a process that is not an init, it goes at once.
func TestAwaitHandler(t *testing.T) {
	defer func(g time.Duration) { handlerGrace = g }(handlerGrace)
	handlerGrace = 300 * time.Millisecond
	s, sys, _ := newTestService(t)
	c := &guestContainer{id: "", ownPidns: true, mainID: "init"}
	s.containers[""] = c
	p := &process{id: "init", container: "", pid: 42, startedAt: time.Now()}
	other := &process{id: "exec", container: "", pid: 43, startedAt: time.Now()}
	const uncaught, caught = "SigCgt:\t0000000000000000\n", "SigCgt:\t0000000000004000\n"
	sys.fileData["/proc/42/status"] = []byte(uncaught)
	sys.fileData["/proc/43/status"] = []byte(uncaught)

	go func() {
		time.Sleep(100 * time.Millisecond)
		sys.mu.Lock()
		sys.fileData["/proc/42/status"] = []byte(caught)
		sys.mu.Unlock()
	}()
	t0 := time.Now()
	s.awaitHandler(p, unix.SIGTERM)
	if took := time.Since(t0); took < 90*time.Millisecond || took > 250*time.Millisecond {
		t.Errorf("init: waited %s, want until its handler appeared (about 100 ms)", took)
	}

	t0 = time.Now()
	s.awaitHandler(other, unix.SIGTERM)
	if took := time.Since(t0); took > 50*time.Millisecond {
		t.Errorf("a process that is not the init waited %s", took)
	}

	p.startedAt = time.Now()
	sys.fileData["/proc/42/status"] = []byte(uncaught)
	t0 = time.Now()
	s.awaitHandler(p, unix.SIGTERM)
	if took := time.Since(t0); took < 250*time.Millisecond || took > time.Second {
		t.Errorf("an init that never catches it: waited %s, want the grace (300 ms)", took)
	}
	t0 = time.Now()
	s.awaitHandler(p, unix.SIGKILL)
	if took := time.Since(t0); took > 50*time.Millisecond {
		t.Errorf("SIGKILL waited %s", took)
	}
}
