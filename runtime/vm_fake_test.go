package runtime

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeVMScript is what a fakeVM does besides serving its agent.
type fakeVMScript struct {
	// startErr makes Start fail.
	startErr error
	// console is written to the console log at Start, one line each.
	console []string
	// exitAfter > 0 makes the VMM exit by itself that long after Start,
	// writing exitConsole first; Wait then returns exitErr.
	exitAfter   time.Duration
	exitConsole []string
	exitErr     error
	// stalled makes the guest never serve its agent, as a guest that
	// halted during boot.
	stalled bool
	// oomErr makes SetOOMScoreAdj fail.
	oomErr error
}

// fakeVM implements VM without a VMM: DialAgent hands out one end of a
// net.Pipe whose other end an in-process ttrpc server with agent serves.
// Its exit, scripted or by Stop, is what a VMM's death looks like from the
// host: the agent's connections break first, then Wait returns.
type fakeVM struct {
	cfg    vmm.Config
	agent  agentapi.AgentService
	script fakeVMScript

	mu        sync.Mutex
	started   bool
	stopCalls int
	killCalls int
	dials     int
	saved     bool
	paused    bool
	srv       *ttrpc.Server
	l         *connListener
	conns     []net.Conn // the guest's ends
	exited    chan struct{}
	exitOnce  sync.Once
	waitErr   error
	// oomAdjs are the values SetOOMScoreAdj gave the VMM's processes.
	oomAdjs []int
}

func newFakeVM(cfg vmm.Config, agent agentapi.AgentService, s fakeVMScript) *fakeVM {
	return &fakeVM{cfg: cfg, agent: agent, script: s, exited: make(chan struct{})}
}

func (v *fakeVM) Start(ctx context.Context) error {
	if v.script.startErr != nil {
		return v.script.startErr
	}
	var opts []ttrpc.ServerOpt
	if a, ok := v.agent.(*fakeAgent); ok {
		opts = append(opts, ttrpc.WithUnaryServerInterceptor(a.stall))
	}
	srv, err := ttrpc.NewServer(opts...)
	if err != nil {
		return fmt.Errorf("fake vm: %w", err)
	}
	agentapi.RegisterAgentService(srv, v.agent)
	if err := v.writeConsole(v.script.console); err != nil {
		return err
	}
	l := &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
	v.mu.Lock()
	v.started, v.srv, v.l = true, srv, l
	v.mu.Unlock()
	go func() { _ = srv.Serve(context.Background(), l) }()
	if v.script.exitAfter > 0 {
		go func() {
			select {
			case <-time.After(v.script.exitAfter):
				v.exit(v.script.exitErr, v.script.exitConsole)
			case <-v.exited:
			}
		}()
	}
	if a, ok := v.agent.(*fakeAgent); ok {
		// The agent's Shutdown powers the VM off, as the guest would.
		go func() {
			select {
			case <-a.poweredOff:
				// The agent replies first, then the guest powers off.
				time.Sleep(10 * time.Millisecond)
				v.exit(nil, []string{"reboot: Power down"})
			case <-v.exited:
			}
		}()
	}
	return nil
}

// Save writes a template's snapshot files, as qemu's migration would.
func (v *fakeVM) Save(context.Context) error {
	if v.cfg.Template == nil {
		return fmt.Errorf("fake vm %q: not a template", v.cfg.ID)
	}
	v.mu.Lock()
	v.saved = true
	v.mu.Unlock()
	for _, f := range []string{v.cfg.Template.RAM, v.cfg.Template.State} {
		if err := os.WriteFile(f, []byte("snapshot of "+v.cfg.ID), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Pause and Resume stand for the VMM's: the guest's CPUs stop and go on.
func (v *fakeVM) Pause(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused = true
	return nil
}

func (v *fakeVM) Resume(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused = false
	return nil
}

func (v *fakeVM) DialAgent(ctx context.Context) (net.Conn, error) {
	v.mu.Lock()
	if !v.started {
		v.mu.Unlock()
		return nil, fmt.Errorf("fake vm %q: not started", v.cfg.ID)
	}
	if v.script.stalled {
		v.mu.Unlock()
		select {
		case <-v.exited:
			return nil, fmt.Errorf("fake vm %q: exited", v.cfg.ID)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	host, guest := net.Pipe()
	v.conns = append(v.conns, guest)
	v.dials++
	l := v.l
	v.mu.Unlock()
	select {
	case l.conns <- guest:
		return host, nil
	case <-l.done:
		host.Close()
		return nil, fmt.Errorf("fake vm %q: exited", v.cfg.ID)
	case <-ctx.Done():
		host.Close()
		return nil, ctx.Err()
	}
}

func (v *fakeVM) Stop(ctx context.Context) error {
	v.mu.Lock()
	v.stopCalls++
	v.mu.Unlock()
	// As the Supervisor's: an exit Stop causes is a clean one for Wait.
	v.exit(nil, nil)
	return nil
}

func (v *fakeVM) Kill() error {
	v.mu.Lock()
	v.killCalls++
	v.mu.Unlock()
	v.exit(nil, nil) // clean for Wait, as the Supervisor's
	return nil
}

func (v *fakeVM) kills() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.killCalls
}

func (v *fakeVM) Wait() error {
	<-v.exited
	return v.waitErr
}

func (v *fakeVM) Pid() int { return 4242 }

// SetOOMScoreAdj records adj, as the drivers give it to their processes.
func (v *fakeVM) SetOOMScoreAdj(adj int) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.script.oomErr != nil {
		return v.script.oomErr
	}
	v.oomAdjs = append(v.oomAdjs, adj)
	return nil
}

func (v *fakeVM) oomAdjusted() []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]int(nil), v.oomAdjs...)
}

// exit ends the fake VMM once: console lines, broken connections, then
// Wait's return.
func (v *fakeVM) exit(err error, console []string) {
	v.exitOnce.Do(func() {
		_ = v.writeConsole(console)
		v.mu.Lock()
		for _, c := range v.conns {
			c.Close()
		}
		if v.srv != nil {
			v.srv.Close()
			v.l.Close()
		}
		v.mu.Unlock()
		if a, ok := v.agent.(*fakeAgent); ok {
			a.vmGone()
		}
		v.waitErr = err
		close(v.exited)
	})
}

func (v *fakeVM) writeConsole(lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	f, err := os.OpenFile(v.cfg.ConsoleLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("fake vm: console log: %w", err)
	}
	defer f.Close()
	_, err = f.WriteString(strings.Join(lines, "\r\n") + "\r\n")
	return err
}

func (v *fakeVM) stops() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.stopCalls
}

func (v *fakeVM) hasExited() bool {
	select {
	case <-v.exited:
		return true
	default:
		return false
	}
}

// connListener hands the fake VM's guest ends to its ttrpc server.
type connListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return fakeAddr{} }

type fakeAddr struct{}

func (fakeAddr) Network() string { return "pipe" }
func (fakeAddr) String() string  { return "fake-agent" }
