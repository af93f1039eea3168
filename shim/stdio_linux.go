package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/fifo"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// stdioPaths are a process's stdio as containerd names them: fifo paths,
// binary:// (a logging program, nerdctl's log driver) or file:// URIs.
type stdioPaths struct {
	stdin, stdout, stderr string
	terminal              bool
}

// processIO is the host side of a process's stdio.
type processIO struct {
	stdin          io.ReadCloser
	stdout, stderr io.WriteCloser
	logger         *exec.Cmd // binary://: the logging program
	loggerDone     chan struct{}
}

// loggerReadyTimeout bounds a logging binary's start; loggerExitTimeout its
// flush after the output ends, before SIGTERM.
const (
	loggerReadyTimeout = 30 * time.Second
	loggerExitTimeout  = 10 * time.Second
)

// openStdio opens what p names for container id of namespace ns.
func openStdio(ctx context.Context, id, ns string, p stdioPaths) (_ *processIO, retErr error) {
	pio := &processIO{}
	defer func() {
		if retErr != nil {
			pio.Close()
		}
	}()
	if p.stdin != "" {
		f, err := fifo.OpenFifo(context.WithoutCancel(ctx), p.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("opening stdin fifo %q: %w", p.stdin, err)
		}
		pio.stdin = f
	}
	if p.stdout == "" && p.stderr == "" {
		return pio, nil
	}
	u, err := url.Parse(p.stdout)
	if err != nil {
		return nil, fmt.Errorf("parsing stdout %q: %w", p.stdout, err)
	}
	switch u.Scheme {
	case "", "fifo":
		if pio.stdout, err = openOutputFifo(p.stdout); err != nil {
			return nil, err
		}
		if !p.terminal && p.stderr != "" {
			if pio.stderr, err = openOutputFifo(p.stderr); err != nil {
				return nil, err
			}
		}
	case "file":
		if pio.stdout, err = openOutputFile(u.Path); err != nil {
			return nil, err
		}
		if !p.terminal {
			if p.stderr == p.stdout {
				pio.stderr = sharedWriter{pio.stdout}
			} else if p.stderr != "" {
				eu, err := url.Parse(p.stderr)
				if err != nil {
					return nil, fmt.Errorf("parsing stderr %q: %w", p.stderr, err)
				}
				if pio.stderr, err = openOutputFile(eu.Path); err != nil {
					return nil, err
				}
			}
		}
	case "binary":
		if err := pio.startLogger(u, id, ns); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("stdout %q: unsupported scheme %q (fifo path, binary:// or file://)", p.stdout, u.Scheme)
	}
	return pio, nil
}

// openOutputFifo opens an output fifo read-write: the open never blocks,
// and writes do not fail while the client has not opened its end yet.
func openOutputFifo(path string) (io.WriteCloser, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening output fifo %q: %w", path, err)
	}
	return f, nil
}

func openOutputFile(path string) (io.WriteCloser, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("log file %q: the path must be absolute", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the directory of log file %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log file %q: %w", path, err)
	}
	return f, nil
}

// sharedWriter is a second name for a writer that is closed once.
type sharedWriter struct{ io.Writer }

func (sharedWriter) Close() error { return nil }

// startLogger runs a binary:// logging program as containerd's runc shim
// does: the URI's query becomes its arguments, CONTAINER_ID and
// CONTAINER_NAMESPACE its environment, the read ends of the stdout and
// stderr pipes its fds 3 and 4, and fd 5 a pipe it closes when ready.
func (pio *processIO) startLogger(u *url.URL, id, ns string) (retErr error) {
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("logging binary %q: %w", u.Path, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("logging binary %q: %w", u.Path, err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return fmt.Errorf("logging binary %q: %w", u.Path, err)
	}
	defer readyR.Close()
	pio.stdout, pio.stderr = outW, errW
	cmd := exec.Command(u.Path, args...)
	cmd.Env = []string{"CONTAINER_ID=" + id, "CONTAINER_NAMESPACE=" + ns}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	err = cmd.Start()
	outR.Close()
	errR.Close()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("starting logging binary %q: %w", u.Path, err)
	}
	pio.logger = cmd
	pio.loggerDone = make(chan struct{})
	go func() {
		cmd.Wait() //nolint:errcheck // its exit status tells nothing the log would not
		close(pio.loggerDone)
	}()
	ready := make(chan error, 1)
	go func() {
		_, err := readyR.Read(make([]byte, 1))
		if errors.Is(err, io.EOF) {
			err = nil
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("waiting for logging binary %q: %w", u.Path, err)
		}
	case <-pio.loggerDone:
		return fmt.Errorf("logging binary %q exited before it was ready", u.Path)
	case <-time.After(loggerReadyTimeout):
		return fmt.Errorf("logging binary %q not ready after %s", u.Path, loggerReadyTimeout)
	}
	return nil
}

// stdio is what runtime.Process.Pump copies.
func (pio *processIO) stdio() runtime.Stdio {
	var s runtime.Stdio
	if pio.stdin != nil {
		s.Stdin = pio.stdin
	}
	if pio.stdout != nil {
		s.Stdout = pio.stdout
	}
	if pio.stderr != nil {
		s.Stderr = pio.stderr
	}
	return s
}

// closeStdin ends the stdin copy (CloseIO): the guest sees end of file.
func (pio *processIO) closeStdin() error {
	if pio.stdin == nil {
		return nil
	}
	return pio.stdin.Close()
}

// Close closes every stream; a logging binary gets its end of file, time
// to flush, then SIGTERM and SIGKILL.
func (pio *processIO) Close() error {
	var errs []error
	for _, c := range []io.Closer{pio.stdin, pio.stdout, pio.stderr} {
		if c != nil {
			if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	if pio.logger != nil {
		select {
		case <-pio.loggerDone:
		case <-time.After(loggerExitTimeout):
			pio.logger.Process.Signal(syscall.SIGTERM)
			select {
			case <-pio.loggerDone:
			case <-time.After(loggerExitTimeout):
				pio.logger.Process.Kill()
				<-pio.loggerDone
			}
		}
	}
	return errors.Join(errs...)
}
