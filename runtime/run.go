package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// RunOptions are the inputs of Run besides the config.
type RunOptions struct {
	BundleDir string
	ID        string
	Stdio     Stdio
	// Signals received by the caller are forwarded to the container's
	// process, as runc run does.
	Signals <-chan os.Signal
	// Terminal, when the process has a terminal (process.terminal), makes
	// the caller's terminal ready (raw mode) and returns its size changes
	// and a function that restores it; nil: no caller terminal.
	Terminal func() (sizes <-chan WindowSize, restore func(), err error)
	// Warn, when set, is told what went wrong without failing the start
	// (Instance.Warnings).
	Warn func(msg string)
}

// WindowSize is a terminal size in characters.
type WindowSize struct{ Width, Height uint32 }

// RunResult is what Run reports besides an error.
type RunResult struct {
	ExitStatus int
	Timings    Timings
	Driver     string
	Accel      string
}

// Run is runc's foreground run: create, start, relay stdio and signals,
// wait, delete. Its result carries the process's exit status.
func Run(ctx context.Context, c Config, o RunOptions) (RunResult, error) {
	return run(ctx, c, o, defaultBootDeps())
}

// run is Run with its boot side effects injected.
func run(ctx context.Context, c Config, o RunOptions, d bootDeps) (res RunResult, err error) {
	res.ExitStatus = -1
	b, err := bundle.Load(o.BundleDir)
	if err != nil {
		return res, err
	}
	stateDir, err := createStateDir(c, o.ID)
	if err != nil {
		return res, err
	}
	defer func() {
		// Shutdown has unmounted the shares; if it could not, keep the
		// state dir rather than reach into a host directory bound there.
		if removeShares(stateDir) == nil {
			os.RemoveAll(stateDir)
		}
	}()

	inst, err := boot(ctx, c, b, o.ID, stateDir, false, d)
	if err != nil {
		return res, err
	}
	for _, w := range inst.Warnings {
		if o.Warn != nil {
			o.Warn(w)
		}
	}
	res.Driver, res.Accel = inst.Driver, inst.Accel.Name
	inst.FollowHostClock(func(format string, args ...any) {
		if o.Warn != nil {
			o.Warn(fmt.Sprintf(format, args...))
		}
	})
	defer func() {
		serr := inst.Shutdown(context.Background(), 10*time.Second)
		res.Timings = inst.Timings
		if err == nil {
			err = serr
		}
	}()

	p, err := inst.CreateProcess(ctx, o.ID, b.Spec.Process)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := p.Start(ctx); err != nil {
		return res, err
	}
	go forwardSignals(ctx, p, o.Signals)
	if b.Spec.Process.Terminal && o.Terminal != nil {
		sizes, restore, err := o.Terminal()
		if err != nil {
			return res, err
		}
		if restore != nil {
			defer restore()
		}
		if sizes != nil {
			go forwardResizes(ctx, p, sizes)
		}
	}

	progress := make(chan struct{}, 1)
	pumpCtx, stopPump := context.WithCancel(ctx)
	defer stopPump()
	pumped := make(chan error, 1)
	go func() { pumped <- p.Pump(pumpCtx, o.Stdio, progress) }()

	status, err := p.Wait(ctx)
	if err != nil {
		return res, err
	}
	inst.Timings.Run = time.Since(t0)
	res.ExitStatus = status
	if err := drain(pumped, progress, drainGrace); err != nil {
		return res, err
	}
	return res, nil
}

// drain waits for the output pumps to reach end of file while output keeps
// arriving; grace of silence ends the wait.
func drain(pumped <-chan error, progress <-chan struct{}, grace time.Duration) error {
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		select {
		case err := <-pumped:
			return err
		case <-progress:
			t.Reset(grace)
		case <-t.C:
			return nil
		}
	}
}

func forwardSignals(ctx context.Context, p *Process, sigs <-chan os.Signal) {
	if sigs == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case s, ok := <-sigs:
			if !ok {
				return
			}
			if n, ok := s.(syscall.Signal); ok {
				_ = p.Signal(ctx, uint32(n), false)
			}
		}
	}
}

func forwardResizes(ctx context.Context, p *Process, sizes <-chan WindowSize) {
	for {
		select {
		case <-ctx.Done():
			return
		case ws, ok := <-sizes:
			if !ok {
				return
			}
			_ = p.Resize(ctx, ws.Width, ws.Height)
		}
	}
}

// createStateDir makes the container's directory under the state root.
func createStateDir(c Config, id string) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.Root, 0o711); err != nil {
		return "", fmt.Errorf("creating state root %q: %w", c.Root, err)
	}
	dir := filepath.Join(c.Root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("container %q: %w", id, ErrContainerExists)
		}
		return "", fmt.Errorf("creating state dir %q: %w", dir, err)
	}
	return dir, nil
}

// ValidateID accepts the ids runc accepts: letters, digits, and _ + - .
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("container id must not be empty")
	}
	if len(id) > 1024 {
		return fmt.Errorf("container id is longer than 1024 bytes")
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '+', r == '-', r == '.':
		default:
			return fmt.Errorf("invalid container id %q: only letters, digits and _ + - . are allowed", id)
		}
	}
	if id == "." || id == ".." {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// Drain is drain with the runtime's grace: after a process exited, wait
// for its output to end while it keeps arriving.
func Drain(pumped <-chan error, progress <-chan struct{}) error {
	return drain(pumped, progress, drainGrace)
}
