package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// fakeProcScript is what a fake guest process does once started.
type fakeProcScript struct {
	// stdout and stderr are written chunk by chunk, alternating.
	stdout, stderr [][]byte
	// echo copies stdin to stdout after the chunks, until stdin's EOF;
	// without it stdin is read and kept (see fakeProc.stdinData).
	echo bool
	// untilSignal makes the process run until a signal arrives; its
	// status is then 128+signal.
	untilSignal bool
	// exitStatus is the status when no signal ended the process.
	exitStatus int32
	// holdOutput keeps stdout and stderr open after the exit, as a
	// background child that inherited them would.
	holdOutput bool
}

// fakeAgent implements agentapi.AgentService in process, with the
// semantics of agent.proto for one scripted process per id.
type fakeAgent struct {
	// pingHangs makes Ping never answer, as before the agent runs.
	pingHangs bool
	// setupErr makes Setup fail; setupHangs makes it never answer.
	setupErr   error
	setupHangs bool
	// proc scripts every process CreateProcess makes.
	proc fakeProcScript
	// netErr makes ConfigureNetwork fail.
	netErr error
	// processFlood adds that many empty entries to ListProcesses' reply
	// (a hostile guest's).
	processFlood int
	// stuck makes every call hang until the VM is gone, whatever its
	// deadline (an agent that stopped answering; see stall).
	stuck atomic.Bool

	// restoredErr makes Restored fail.
	restoredErr error

	mu         sync.Mutex
	restored   []*agentapi.RestoredRequest
	setups     []*agentapi.SetupRequest
	procs      map[string]*fakeProc
	shutdowns  int
	limits     *agentapi.CgroupLimits // the last UpdateLimits
	frozen     map[string]bool        // FreezeContainer: each container's last state
	poweredOff chan struct{}          // closed by Shutdown
	offOnce    sync.Once
	gone       chan struct{} // closed when the VM has exited
	goneOnce   sync.Once
	// networks are the ConfigureNetwork requests.
	networks []*agentapi.NetworkRequest
	// creates are the CreateProcess requests; removed the containers
	// RemoveContainer removed.
	creates []*agentapi.CreateProcessRequest
	removed []string
	// ports are the port connections (portconn_fake_test.go).
	ports fakePorts
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{procs: map[string]*fakeProc{}, poweredOff: make(chan struct{}), gone: make(chan struct{})}
}

// stall is the fake VM's ttrpc server interceptor: while the agent is
// stuck, a call never reaches it and never ends before the VM does.
func (a *fakeAgent) stall(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	if a.stuck.Load() {
		<-a.gone
		return nil, errors.New("guest gone")
	}
	return method(ctx, unmarshal)
}

// vmGone ends every blocked call, as the guest's death does.
func (a *fakeAgent) vmGone() {
	a.goneOnce.Do(func() {
		close(a.gone)
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, p := range a.procs {
			p.kill(errors.New("guest gone"))
		}
	})
}

// fakeProc is one scripted process.
type fakeProc struct {
	id     string
	spec   specs.Process
	script fakeProcScript

	stdinR, stdoutR, stderrR *io.PipeReader
	stdinW, stdoutW, stderrW *io.PipeWriter

	signals chan uint32
	killed  chan struct{} // closed when the guest is gone
	done    chan struct{}
	status  int32 // valid once done is closed

	mu          sync.Mutex
	started     bool
	stdinClosed bool
	stdinData   bytes.Buffer
	signalled   []uint32
}

func (p *fakeProc) kill(err error) {
	close(p.killed)
	for _, c := range []interface{ CloseWithError(error) error }{p.stdinR, p.stdinW, p.stdoutR, p.stdoutW, p.stderrR, p.stderrW} {
		c.CloseWithError(err)
	}
}

func (p *fakeProc) run() {
	s := p.script
	for i := 0; i < max(len(s.stdout), len(s.stderr)); i++ {
		if i < len(s.stdout) {
			if _, err := p.stdoutW.Write(s.stdout[i]); err != nil {
				break
			}
		}
		if i < len(s.stderr) {
			if _, err := p.stderrW.Write(s.stderr[i]); err != nil {
				break
			}
		}
	}
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		if s.echo {
			_, _ = io.Copy(p.stdoutW, p.stdinR)
			return
		}
		buf := make([]byte, 4096)
		for {
			n, err := p.stdinR.Read(buf)
			p.mu.Lock()
			p.stdinData.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	status := s.exitStatus
	switch {
	case s.untilSignal:
		select {
		case sig := <-p.signals:
			status = 128 + int32(sig)
		case <-p.killed:
			status = 128 + int32(syscall.SIGKILL)
		}
	case s.echo:
		<-stdinDone
	}
	// Gone: writes to its stdin fail as with a closed pipe.
	p.stdinR.CloseWithError(syscall.EPIPE)
	if !s.holdOutput {
		p.stdoutW.Close()
		p.stderrW.Close()
	}
	p.status = status
	close(p.done)
}

func (a *fakeAgent) lookup(id string) (*fakeProc, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.procs[id]
	if !ok {
		return nil, fmt.Errorf("no process %q", id)
	}
	return p, nil
}

func (a *fakeAgent) Restored(_ context.Context, r *agentapi.RestoredRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.restored = append(a.restored, r)
	if a.restoredErr != nil {
		return nil, a.restoredErr
	}
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) Ping(context.Context, *agentapi.PingRequest) (*agentapi.PingResponse, error) {
	if a.pingHangs {
		// An agent that is not up yet never sees the request, so the
		// deadline ttrpc passes along does not end it either.
		<-a.gone
		return nil, errors.New("guest gone")
	}
	return &agentapi.PingResponse{AgentVersion: agentapi.Version, KernelRelease: "6.1.0-fake"}, nil
}

func (a *fakeAgent) Setup(ctx context.Context, r *agentapi.SetupRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	a.setups = append(a.setups, r)
	a.mu.Unlock()
	if a.setupErr != nil {
		return nil, a.setupErr
	}
	if a.setupHangs {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-a.gone:
			return nil, errors.New("guest gone")
		}
	}
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) CreateProcess(_ context.Context, r *agentapi.CreateProcessRequest) (*agentapi.CreateProcessResponse, error) {
	var sp specs.Process
	if err := json.Unmarshal(r.ProcessJson, &sp); err != nil {
		return nil, fmt.Errorf("decoding process %q: %w", r.Id, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creates = append(a.creates, r)
	if len(a.setups) == 0 {
		return nil, errors.New("CreateProcess before Setup")
	}
	if _, dup := a.procs[r.Id]; dup {
		return nil, fmt.Errorf("process %q exists", r.Id)
	}
	p := &fakeProc{id: r.Id, spec: sp, script: a.proc, signals: make(chan uint32, 4), killed: make(chan struct{}), done: make(chan struct{})}
	p.stdinR, p.stdinW = io.Pipe()
	p.stdoutR, p.stdoutW = io.Pipe()
	p.stderrR, p.stderrW = io.Pipe()
	a.procs[r.Id] = p
	return &agentapi.CreateProcessResponse{Pid: uint32(100 + len(a.procs))}, nil
}

func (a *fakeAgent) StartProcess(_ context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return nil, fmt.Errorf("process %q already started", r.Id)
	}
	p.started = true
	go p.run()
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) WriteStdin(_ context.Context, r *agentapi.WriteStdinRequest) (*agentapi.WriteStdinResponse, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	n, err := p.stdinW.Write(r.Data)
	if err != nil {
		return nil, fmt.Errorf("writing stdin of %q: %w", r.Id, err)
	}
	return &agentapi.WriteStdinResponse{Written: uint32(n)}, nil
}

func (a *fakeAgent) CloseStdin(_ context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.stdinClosed = true
	p.mu.Unlock()
	p.stdinW.Close()
	return &agentapi.Empty{}, nil
}

// read returns at most max bytes of r; empty data is end of file.
func read(r io.Reader, maxBytes uint32) (*agentapi.ReadResponse, error) {
	if maxBytes == 0 || maxBytes > agentapi.MaxReadBytes {
		maxBytes = agentapi.MaxReadBytes
	}
	buf := make([]byte, maxBytes)
	n, err := r.Read(buf)
	if err == io.EOF {
		return &agentapi.ReadResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &agentapi.ReadResponse{Data: buf[:n]}, nil
}

func (a *fakeAgent) ReadStdout(_ context.Context, r *agentapi.ReadRequest) (*agentapi.ReadResponse, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	return read(p.stdoutR, r.MaxBytes)
}

func (a *fakeAgent) ReadStderr(_ context.Context, r *agentapi.ReadRequest) (*agentapi.ReadResponse, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	return read(p.stderrR, r.MaxBytes)
}

func (a *fakeAgent) ResizePty(_ context.Context, r *agentapi.ResizePtyRequest) (*agentapi.Empty, error) {
	if _, err := a.lookup(r.Id); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("process %q has no terminal", r.Id)
}

func (a *fakeAgent) SignalProcess(_ context.Context, r *agentapi.SignalRequest) (*agentapi.Empty, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return nil, fmt.Errorf("process %q has exited", r.Id)
	default:
	}
	p.mu.Lock()
	p.signalled = append(p.signalled, r.Signal)
	p.mu.Unlock()
	select {
	case p.signals <- r.Signal:
	default:
	}
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) WaitProcess(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitResponse, error) {
	p, err := a.lookup(r.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return &agentapi.WaitResponse{ExitStatus: p.status}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-a.gone:
		return nil, errors.New("guest gone")
	}
}

func (a *fakeAgent) ListProcesses(context.Context, *agentapi.ListProcessesRequest) (*agentapi.ListProcessesResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out agentapi.ListProcessesResponse
	for _, p := range a.procs {
		out.Processes = append(out.Processes, &agentapi.ProcessInfo{Comm: p.id, Args: p.spec.Args})
	}
	for range a.processFlood {
		out.Processes = append(out.Processes, &agentapi.ProcessInfo{})
	}
	return &out, nil
}

func (a *fakeAgent) Stats(context.Context, *agentapi.ContainerRequest) (*agentapi.StatsResponse, error) {
	return &agentapi.StatsResponse{CpuUsageUsec: 1}, nil
}

func (a *fakeAgent) FreezeContainer(_ context.Context, r *agentapi.FreezeRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.frozen == nil {
		a.frozen = map[string]bool{}
	}
	a.frozen[r.ContainerId] = r.Frozen
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) UpdateLimits(_ context.Context, r *agentapi.UpdateLimitsRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.limits = r.Limits
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) ConfigureNetwork(_ context.Context, r *agentapi.NetworkRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.networks = append(a.networks, r)
	if a.netErr != nil {
		return nil, a.netErr
	}
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) removedCopy() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.removed...)
}

func (a *fakeAgent) RemoveContainer(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.setups {
		if r.ContainerId != "" && s.ContainerId == r.ContainerId {
			a.removed = append(a.removed, r.ContainerId)
			return &agentapi.Empty{}, nil
		}
	}
	return nil, fmt.Errorf("fake agent: no pod member %q", r.ContainerId)
}

func (a *fakeAgent) Shutdown(context.Context, *agentapi.Empty) (*agentapi.Empty, error) {
	a.mu.Lock()
	a.shutdowns++
	a.mu.Unlock()
	a.offOnce.Do(func() { close(a.poweredOff) })
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) shutdownCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.shutdowns
}
