package guestagent

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// handlerGrace is how long after its start a container's init may take to
// install its signal handlers before a signal it would drop is sent
// anyway. The kernel drops a signal whose action is the default for the
// init of a PID namespace (or of the VM), so a stop right after a start
// (critest's, kubelet's) would otherwise race the program's own setup: under
// runc that setup takes microseconds, under TCG milliseconds.
var handlerGrace = 2 * time.Second

// handlerPoll is how often that wait looks again.
const handlerPoll = 10 * time.Millisecond

// awaitHandler waits, within handlerGrace of p's start, until init process
// p catches sig (its /proc status's SigCgt), so that sig reaches the
// handler its program is about to install instead of being dropped.
func (s *Service) awaitHandler(p *process, sig unix.Signal) {
	if sig == unix.SIGKILL || sig == unix.SIGSTOP || sig <= 0 || !s.isInit(p) {
		return
	}
	p.mu.Lock()
	started := p.startedAt
	p.mu.Unlock()
	if started.IsZero() {
		return
	}
	deadline := started.Add(handlerGrace)
	for time.Now().Before(deadline) {
		caught, err := s.catches(p.pid, sig)
		if err != nil || caught {
			return
		}
		time.Sleep(handlerPoll)
	}
}

// isInit reports whether p is an init the kernel shields from default
// actions: the first process of a container with its own PID namespace,
// or a handed-off PID 1.
func (s *Service) isInit(p *process) bool {
	if s.isPID1(p) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[p.container]
	return c != nil && c.ownPidns && c.mainID == p.id
}

// catches reports whether pid has a handler for sig.
func (s *Service) catches(pid int, sig unix.Signal) (bool, error) {
	data, err := s.sys.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, err
	}
	return sigCaught(string(data), sig)
}

// sigCaught reads sig's bit of SigCgt in a /proc status.
func sigCaught(status string, sig unix.Signal) (bool, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("SigCgt %q: %w", v, err)
			}
			return mask&(1<<(uint(sig)-1)) != 0, nil
		}
	}
	return false, fmt.Errorf("no SigCgt line")
}
