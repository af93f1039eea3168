package guestagent

import (
	"context"
	"io"
	"os"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// launchRequest is one process to prepare.
type launchRequest struct {
	ID      string
	Process *specs.Process
	Rootfs  string
	// Console, when set, is the process's stdin, stdout and stderr (the
	// sidecar program) instead of pipes or a pty.
	Console *os.File
	// NewNamespaces are the namespaces the process gets of its own:
	// "pid" (it is PID 1 there, with a /proc of its own at Rootfs/proc),
	// "uts" (with Hostname) and "ipc".
	NewNamespaces []string
	Hostname      string
	// Sysctls are written in the new IPC and UTS namespaces.
	Sysctls map[string]string
	// CgroupProcs is the cgroup.procs file of the container's cgroup: the
	// helper is moved there before it reads its configuration.
	CgroupProcs string
	// CgroupMount is where in Rootfs the container's cgroup2 is mounted
	// (""): with a new cgroup namespace, mounted again inside it
	// (read-only when CgroupReadonly).
	CgroupMount    string
	CgroupReadonly bool
	// RootPropagation is the propagation its new mount namespace's root
	// gets after the pivot (0: private).
	RootPropagation uintptr
	// Seccomp is the container's BPF program (sock_filter array),
	// installed with SeccompFlags before the exec.
	Seccomp      []byte
	SeccompFlags uint32
	// JoinNamespacesOf, when set, starts the process in the namespaces
	// JoinNamespaces ("pid", "uts", "ipc") of that pid.
	JoinNamespacesOf int
	JoinNamespaces   []string
	// Masked and Readonly are the spec's paths, applied again under the
	// new /proc of a new PID namespace.
	Masked, Readonly []string
	// ProcMounts are the mount points Setup made below Rootfs/proc,
	// which the process's own /proc keeps (procinit.Config.ProcMounts).
	ProcMounts []string
	// PID1, when set, makes the process PID 1 of the VM (handoff) instead
	// of a child of the agent.
	PID1 *pid1
}

// launched is a prepared process: it is waiting for Start to exec.
type launched struct {
	Pid int
	// Stdin is the agent's end of the process's stdin; nil with a console.
	Stdin io.WriteCloser
	// Stdout and Stderr are the agent's ends of the output; nil with a
	// console, and Stderr is nil with a terminal.
	Stdout io.ReadCloser
	Stderr io.ReadCloser
	// Resize sets the terminal size; nil without a terminal.
	Resize func(width, height uint16) error
	// Start lets the process exec and returns the exec error, if any.
	Start func(ctx context.Context) error
	// Exited delivers the exit once.
	Exited <-chan exitInfo
	// Release frees what the launcher still holds for the process (the
	// start and status pipes of a process that never started); called
	// once it has exited. May be nil.
	Release func()
}

// launcher prepares processes. helperLauncher is the real one.
type launcher interface {
	Launch(ctx context.Context, req launchRequest) (*launched, error)
}

// procState is where a process is in its life.
type procState string

const (
	procCreated procState = "created"
	procRunning procState = "running"
	procExited  procState = "exited"
)

// process is the agent's record of one process it started.
type process struct {
	id        string
	container string // the id of the container it runs in
	pid       int
	terminal  bool
	h         *launched
	stdout    *outputBuffer
	stderr    *outputBuffer

	stdinMu sync.Mutex // orders writes

	mu          sync.Mutex
	state       procState
	starting    bool
	startedAt   time.Time // when its exec succeeded
	stdinClosed bool
	exit        exitInfo
	done        chan struct{} // closed at exit
	// oomKills is its container cgroup's oom_kill count when it was
	// created; oomKilled says the count grew before its SIGKILL death.
	oomKills  uint64
	oomKilled bool
}

func (p *process) getState() procState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// writeStdin writes all of data, honouring ctx when the writer supports
// deadlines (pipes and pty masters do).
func (p *process) writeStdin(ctx context.Context, data []byte) (int, error) {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	w := p.h.Stdin
	d, ok := w.(interface{ SetWriteDeadline(time.Time) error })
	if ok {
		if dl, has := ctx.Deadline(); has {
			_ = d.SetWriteDeadline(dl)
		}
		stop := context.AfterFunc(ctx, func() { _ = d.SetWriteDeadline(time.Unix(1, 0)) })
		defer func() {
			stop()
			_ = d.SetWriteDeadline(time.Time{})
		}()
	}
	n, err := w.Write(data)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return n, err
}
