package shim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// container is one task: its VM, its init process and its execs.
type container struct {
	id     string
	bundle string
	spec   *specs.Spec
	rec    *record
	vm     sandbox
	memMiB int
	cpus   int
	init   *taskProcess
	// view is the task's view process, whose pid is the task's.
	view view
	// ports is a pod sandbox's port forward (nil: none).
	ports *portForward

	mu     sync.Mutex // guards execs and paused
	execs  map[string]*taskProcess
	paused bool
}

// isMember reports whether the container joins a pod sandbox's VM.
func (c *container) isMember() bool {
	return c.spec.Annotations[annotationContainerType] == "container" && c.spec.Annotations[annotationSandboxID] != ""
}

// process finds the init ("") or an exec.
func (c *container) process(execID string) (*taskProcess, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, fmt.Errorf("exec %q of task %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

func (c *container) isPaused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

// endExecs runs when the init has exited: as when a PID namespace's init
// dies, every other process of the container is killed, and their exits
// are reported before the init's.
func (c *container) endExecs(ctx context.Context) {
	c.mu.Lock()
	var live []*taskProcess
	for _, p := range c.execs {
		if !p.hasExited() {
			live = append(live, p)
		}
	}
	c.mu.Unlock()
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = c.init.gp.Signal(ctx, 9, true)
	for _, p := range live {
		_ = p.gp.Signal(ctx, 9, false)
		select {
		case <-p.exited:
		case <-ctx.Done():
			return
		}
	}
}

// ociState is the state hooks receive on their stdin.
func (c *container) ociState(status specs.ContainerState, pid int) *specs.State {
	st := &specs.State{
		Version:     specs.Version,
		ID:          c.id,
		Status:      status,
		Pid:         pid,
		Bundle:      c.bundle,
		Annotations: map[string]string{},
	}
	for k, v := range c.spec.Annotations {
		st.Annotations[k] = v
	}
	if c.rec != nil && c.rec.Netns != "" {
		// nerdctl's CNI hook configures this namespace rather than
		// /proc/<pid>/ns/net (its ocihook.NetworkNamespace, "for VM based
		// runtimes").
		st.Annotations["nerdctl/network-namespace"] = c.rec.Netns
	}
	return st
}

// runHooks runs one stage of the spec's hooks on the host.
func (c *container) runHooks(ctx context.Context, stage string, status specs.ContainerState, pid int) error {
	hooks := runtime.HooksFor(c.spec.Hooks, stage)
	if len(hooks) == 0 {
		return nil
	}
	return runtime.RunHooks(ctx, hooks, c.ociState(status, pid), stage)
}
