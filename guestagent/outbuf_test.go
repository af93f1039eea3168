package guestagent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// readAll drains b until EOF.
func readAll(t *testing.T, b *outputBuffer, max int) []byte {
	t.Helper()
	var out []byte
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		chunk, err := b.Read(ctx, max)
		cancel()
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(chunk) == 0 {
			return out
		}
		if len(chunk) > max {
			t.Fatalf("Read returned %d bytes, max %d", len(chunk), max)
		}
		out = append(out, chunk...)
	}
}

func TestOutputBufferOrderAndEOF(t *testing.T) {
	pr, pw := io.Pipe()
	b := newOutputBuffer(64)
	go b.pump(pr)
	var want bytes.Buffer
	go func() {
		for i := 0; i < 200; i++ {
			line := strings.Repeat(string(rune('a'+i%26)), i%17+1) + "\n"
			want.WriteString(line)
			if _, err := pw.Write([]byte(line)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	got := readAll(t, b, 7)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, want %d in the same order", len(got), want.Len())
	}
	// EOF stays EOF.
	for i := 0; i < 3; i++ {
		if chunk, err := b.Read(context.Background(), 10); err != nil || len(chunk) != 0 {
			t.Fatalf("read after EOF = %q, %v; want empty, nil", chunk, err)
		}
	}
	if !b.Done() || b.Err() != nil {
		t.Errorf("Done=%v Err=%v after EOF", b.Done(), b.Err())
	}
}

// lastWordsReader returns data together with EOF in one call, as a process
// that writes and exits can look to a reader.
type lastWordsReader struct{ data []byte }

func (r *lastWordsReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, syscall.EIO // a pty master after the slave closed
	}
	return n, nil
}

func TestOutputBufferDrainsBeforeEOF(t *testing.T) {
	b := newOutputBuffer(1 << 10)
	b.pump(&lastWordsReader{data: []byte("goodbye\n")})
	if got := readAll(t, b, 3); string(got) != "goodbye\n" {
		t.Fatalf("got %q, want the last words before EOF", got)
	}
	if b.Err() != nil {
		t.Errorf("EIO should count as EOF, Err = %v", b.Err())
	}
}

// countingReader serves n bytes of 'x' and counts what was taken.
type countingReader struct {
	left  atomic.Int64
	taken atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	left := r.left.Load()
	if left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), left)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.left.Add(-n)
	r.taken.Add(n)
	return int(n), nil
}

func TestOutputBufferBackpressure(t *testing.T) {
	const limit = 100
	src := &countingReader{}
	src.left.Store(1000)
	b := newOutputBuffer(limit)
	go b.pump(src)
	deadline := time.Now().Add(5 * time.Second)
	for src.taken.Load() < limit && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // give an unbounded pump the chance to overrun
	if got := src.taken.Load(); got != limit {
		t.Fatalf("pump took %d bytes with nobody reading, want exactly the limit %d", got, limit)
	}
	chunk, err := b.Read(context.Background(), 30)
	if err != nil || len(chunk) != 30 {
		t.Fatalf("Read = %d bytes, %v; want 30", len(chunk), err)
	}
	// Reading made room: the pump goes on, and everything arrives.
	rest := readAll(t, b, limit)
	if total := len(chunk) + len(rest); total != 1000 {
		t.Fatalf("got %d bytes in all, want 1000", total)
	}
}

func TestOutputBufferContext(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	b := newOutputBuffer(0)
	go b.pump(pr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := b.Read(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read with no data = %v, want the context's error", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("Read took %v to honour the context", time.Since(start))
	}
	// A later write still arrives.
	go pw.Write([]byte("late"))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if got, err := b.Read(ctx2, 10); err != nil || string(got) != "late" {
		t.Fatalf("Read = %q, %v; want late", got, err)
	}
}

func TestOutputBufferReadError(t *testing.T) {
	boom := errors.New("boom")
	b := newOutputBuffer(0)
	b.pump(io.MultiReader(strings.NewReader("ab"), errReader{boom}))
	if got := readAll(t, b, 10); string(got) != "ab" {
		t.Fatalf("got %q", got)
	}
	if !errors.Is(b.Err(), boom) {
		t.Errorf("Err = %v, want %v", b.Err(), boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestClosedOutputBuffer(t *testing.T) {
	b := newClosedOutputBuffer()
	if got, err := b.Read(context.Background(), 10); err != nil || len(got) != 0 {
		t.Fatalf("Read = %q, %v; want EOF", got, err)
	}
}
