package shim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/events"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/runtime"
)

// fakeVM is a sandbox whose processes print their args and exit with the
// status the test sets.
type fakeVM struct {
	mu       sync.Mutex
	procs    map[string]*fakeProc
	shutdown bool
	members  []string
	nextPid  uint32
	limits   *agentapi.CgroupLimits // the last UpdateLimits
	// dialPort serves DialPort (nil: every port refuses).
	dialPort dialPortFunc
}

func newFakeVM() *fakeVM { return &fakeVM{procs: map[string]*fakeProc{}, nextPid: 100} }

func (v *fakeVM) CreateProcess(_ context.Context, id string, p *specs.Process) (guestProcess, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.shutdown {
		return nil, errors.New("fake vm is shut down")
	}
	v.nextPid++
	fp := newFakeProc(v.nextPid, p.Args)
	v.procs[id] = fp
	return fp, nil
}

func (v *fakeVM) proc(id string) *fakeProc {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.procs[id]
}

func (v *fakeVM) Processes(context.Context) ([]*agentapi.ProcessInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []*agentapi.ProcessInfo
	for _, p := range v.procs {
		out = append(out, &agentapi.ProcessInfo{Pid: p.pid})
	}
	return out, nil
}

func (v *fakeVM) GuestStats(context.Context) (*agentapi.StatsResponse, error) {
	return &agentapi.StatsResponse{CpuUsageUsec: 700, MemoryUsageBytes: 3 << 20, MemoryLimitBytes: 512 << 20, PidsCurrent: 2,
		MemoryOomEvents: 3, MemoryOomKillEvents: 1}, nil
}

func (v *fakeVM) UpdateLimits(_ context.Context, l *agentapi.CgroupLimits) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.limits = l
	return nil
}

func (v *fakeVM) Pause(context.Context) error    { return nil }
func (v *fakeVM) Resume(context.Context) error   { return nil }
func (v *fakeVM) Usage() (uint64, uint64, error) { return 5_000_000, 64 << 20, nil }
func (v *fakeVM) VMPid() int                     { return 4242 }
func (v *fakeVM) Disk() string                   { return "" }
func (v *fakeVM) Shutdown(context.Context, time.Duration) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.shutdown = true
	for _, p := range v.procs {
		p.end(137)
	}
	return nil
}

func (v *fakeVM) DialPort(ctx context.Context, port uint32) (guestPort, error) {
	v.mu.Lock()
	dial := v.dialPort
	v.mu.Unlock()
	if dial == nil {
		return nil, fmt.Errorf("dialing 127.0.0.1:%d: connection refused", port)
	}
	return dial(ctx, port)
}

func (v *fakeVM) AddMember(_ context.Context, _ runtime.Config, _ *bundle.Bundle, id string) (sandbox, error) {
	v.mu.Lock()
	v.members = append(v.members, id)
	v.mu.Unlock()
	return v, nil
}

// fakeProc is one process of a fakeVM: it writes its args on start and
// exits when the test calls end (or on SIGKILL/SIGTERM). As with the
// guest agent, its output is kept until the host reads it: Pump copies
// it whether or not the process has exited by then.
type fakeProc struct {
	pid     uint32
	args    []string
	started chan struct{} // closed by Start, once the output exists
	exited  chan struct{} // closed by end, once status is set

	mu     sync.Mutex
	ended  bool
	status int
	oom    bool   // its end was the OOM killer's
	out    []byte // what the process wrote: its args, on start
}

func newFakeProc(pid uint32, args []string) *fakeProc {
	return &fakeProc{pid: pid, args: args, started: make(chan struct{}), exited: make(chan struct{})}
}

func (p *fakeProc) Pid() uint32 { return p.pid }

func (p *fakeProc) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return fmt.Errorf("starting fake process %d: it has exited", p.pid)
	}
	select {
	case <-p.started:
		return nil
	default:
	}
	for _, a := range p.args {
		p.out = append(p.out, a+"\n"...)
	}
	close(p.started)
	return nil
}

func (p *fakeProc) end(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.ended, p.status = true, status
	close(p.exited)
}

func (p *fakeProc) Signal(_ context.Context, sig uint32, _ bool) error {
	if sig == 9 || sig == 15 {
		p.end(128 + int(sig))
	}
	return nil
}

func (p *fakeProc) Resize(context.Context, uint32, uint32) error { return nil }

func (p *fakeProc) OOMKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.oom
}

func (p *fakeProc) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.status, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// Pump copies the output to its end: all of it once the process has
// started (even if it has exited since), none if it ended unstarted.
func (p *fakeProc) Pump(ctx context.Context, s runtime.Stdio, _ chan<- struct{}) error {
	select {
	case <-p.started:
	case <-p.exited:
	case <-ctx.Done():
		return nil
	}
	// Start fills out before it closes started and fails once ended, so
	// out is final on either branch.
	p.mu.Lock()
	out := p.out
	p.mu.Unlock()
	if s.Stdout != nil && len(out) > 0 {
		if _, err := s.Stdout.Write(out); err != nil {
			return fmt.Errorf("writing output of fake process %d: %w", p.pid, err)
		}
	}
	return nil
}

// fakePublisher records the topics of published events.
type fakePublisher struct {
	mu     sync.Mutex
	topics []string
	events []events.Event
}

func (f *fakePublisher) Publish(_ context.Context, topic string, e events.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics = append(f.topics, topic)
	f.events = append(f.events, e)
	return nil
}

func (f *fakePublisher) Close() error { return nil }

func (f *fakePublisher) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.topics...)
}

// fakeShutdown is shutdown.Service.
type fakeShutdown struct {
	mu   sync.Mutex
	done bool
	ch   chan struct{}
}

func (f *fakeShutdown) Shutdown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		f.done = true
		close(f.ch)
	}
}
func (f *fakeShutdown) RegisterCallback(func(context.Context) error) {}
func (f *fakeShutdown) Done() <-chan struct{}                        { return f.ch }
func (f *fakeShutdown) Err() error                                   { return nil }

// fakeView is a view process that only records.
type fakeView struct {
	pid           uint32
	rootfs, netns string
	stopped       bool
}

func (v *fakeView) Pid() uint32 { return v.pid }
func (v *fakeView) Stop() error { v.stopped = true; return nil }
