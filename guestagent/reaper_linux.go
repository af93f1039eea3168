package guestagent

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// exitInfo is how a process ended.
type exitInfo struct {
	Status int32 // exit code, or 128+N for signal N
	At     time.Time
}

// exitStatus maps a wait status to the shell's convention: the exit code, or
// 128+N when signal N killed the process.
func exitStatus(ws unix.WaitStatus) int32 {
	switch {
	case ws.Exited():
		return int32(ws.ExitStatus())
	case ws.Signaled():
		return 128 + int32(ws.Signal())
	default:
		return -1 // stopped or continued: not an exit
	}
}

// reaper owns wait4 for the whole agent. Start runs a start function under
// the reaper's lock and registers the pid it returns before any wait4 can
// see it exit; reap collects every exited child, hands the status of
// registered ones to their callback and drops the rest (orphans re-parented
// to PID 1).
type reaper struct {
	mu      sync.Mutex
	waiters map[int]func(exitInfo)
	now     func() time.Time
	stop    chan struct{}
	done    chan struct{}
}

func newReaper() *reaper {
	return &reaper{waiters: make(map[int]func(exitInfo)), now: time.Now}
}

// Run reaps on every SIGCHLD until Stop. It also reaps once at the start, for
// children that exited before it ran.
func (r *reaper) Run() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	r.mu.Lock()
	r.stop = make(chan struct{})
	r.done = make(chan struct{})
	stop, done := r.stop, r.done
	r.mu.Unlock()
	go func() {
		defer close(done)
		defer signal.Stop(sigs)
		for {
			r.reap()
			select {
			case <-sigs:
			case <-stop:
				return
			}
		}
	}()
}

// Stop ends Run (tests; PID 1 reaps until power off).
func (r *reaper) Stop() {
	r.mu.Lock()
	stop, done := r.stop, r.done
	r.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// Start calls start, which must create exactly one child and return its pid,
// and registers onExit for it. onExit runs on its own goroutine.
func (r *reaper) Start(start func() (int, error), onExit func(exitInfo)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = onExit
	return pid, nil
}

// reap collects every child that has exited.
func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited
			return
		}
		if !ws.Exited() && !ws.Signaled() {
			continue
		}
		if fn, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			go fn(exitInfo{Status: exitStatus(ws), At: r.now()})
		}
	}
}
