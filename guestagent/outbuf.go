package guestagent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// DefaultOutputLimit bounds the output buffered per stream and process.
const DefaultOutputLimit = 1 << 20

// outputBuffer holds one output stream of a process (stdout, stderr or a pty
// master) between the process and the host's ReadStdout/ReadStderr calls.
// One goroutine (pump) reads the source while the buffer has room: when it
// is full, reading stops and the writing process blocks. EOF is reported
// only after every byte read before it was handed out.
type outputBuffer struct {
	limit int

	mu      sync.Mutex
	buf     bytes.Buffer
	eof     bool
	err     error         // the read error that ended the stream, if not EOF/EIO
	changed chan struct{} // closed and replaced on every change
}

func newOutputBuffer(limit int) *outputBuffer {
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	return &outputBuffer{limit: limit, changed: make(chan struct{})}
}

// newClosedOutputBuffer is a stream that is at EOF from the start (stderr
// with a terminal).
func newClosedOutputBuffer() *outputBuffer {
	b := newOutputBuffer(1)
	b.eof = true
	return b
}

// notifyLocked wakes everyone waiting for a change.
func (b *outputBuffer) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// pump copies src into the buffer until src ends, then marks EOF. EIO counts
// as EOF: a pty master returns it once the slave side is closed. pump does
// not close src.
func (b *outputBuffer) pump(src io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		b.mu.Lock()
		for b.buf.Len() >= b.limit {
			ch := b.changed
			b.mu.Unlock()
			<-ch
			b.mu.Lock()
		}
		room := b.limit - b.buf.Len()
		b.mu.Unlock()

		n, err := src.Read(chunk[:min(room, len(chunk))])

		b.mu.Lock()
		if n > 0 {
			b.buf.Write(chunk[:n])
			b.notifyLocked()
		}
		if err != nil {
			b.eof = true
			// os.ErrClosed: the agent closed it (a stopped PID 1 holds the
			// other end, drainOutputs).
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				b.err = err
			}
			b.notifyLocked()
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
}

// Read blocks until data or EOF is available and returns at most max bytes;
// empty data means EOF, and stays so. ctx ends the wait.
func (b *outputBuffer) Read(ctx context.Context, max int) ([]byte, error) {
	if max <= 0 {
		max = 1
	}
	for {
		b.mu.Lock()
		if b.buf.Len() > 0 {
			out := make([]byte, min(max, b.buf.Len()))
			_, _ = b.buf.Read(out)
			b.notifyLocked() // room for the pump
			b.mu.Unlock()
			return out, nil
		}
		if b.eof {
			b.mu.Unlock()
			return nil, nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Done reports whether the stream has reached EOF and been drained.
func (b *outputBuffer) Done() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof && b.buf.Len() == 0
}

// Err is the read error that ended the stream early, if any.
func (b *outputBuffer) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
