package cloudhypervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// handshakeOutcome is what a hybrid vsock reply must give: the reply line
// when it is complete within maxHandshakeLine bytes (lineEnd is the index
// of its newline), or undecided while the reply is short and has no
// newline yet, or overlong.
type handshakeOutcome struct {
	line      string
	lineEnd   int
	complete  bool
	overlong  bool
	undecided bool
}

func expectHandshake(reply []byte) handshakeOutcome {
	if i := bytes.IndexByte(reply, '\n'); i >= 0 && i <= maxHandshakeLine {
		return handshakeOutcome{line: string(reply[:i]), lineEnd: i, complete: true}
	}
	if len(reply) > maxHandshakeLine {
		return handshakeOutcome{overlong: true}
	}
	return handshakeOutcome{undecided: true}
}

// wellFormedOK is the grammar of cloud-hypervisor's reply: "OK", a space,
// and the decimal host port, a uint32 without leading zeros.
func wellFormedOK(line string) bool {
	digits, ok := bytes.CutPrefix([]byte(line), []byte("OK "))
	if !ok || len(digits) == 0 || (len(digits) > 1 && digits[0] == '0') {
		return false
	}
	for _, d := range digits {
		if d < '0' || d > '9' {
			return false
		}
	}
	_, err := strconv.ParseUint(string(digits), 10, 32)
	return err == nil
}

// fuzzReadLine runs readLine against a net.Pipe peer that sends reply one
// byte a write (a write returns only once read) and then closes: it
// checks the result and that readLine read no byte beyond the line or
// the bound.
func fuzzReadLine(t *testing.T, reply []byte) {
	client, peer := net.Pipe()
	defer client.Close()
	sent := make(chan int, 1)
	go func() {
		defer peer.Close()
		n := 0
		for i := range reply {
			if _, err := peer.Write(reply[i : i+1]); err != nil {
				break
			}
			n++
		}
		sent <- n
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(client, maxHandshakeLine)
	client.Close() // fails the peer's pending write
	read := <-sent
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("readLine of %q hung: %v", reply, err)
	}
	want := expectHandshake(reply)
	switch {
	case want.complete:
		if err != nil || line != want.line || read != want.lineEnd+1 {
			t.Fatalf("readLine of %q = %q, %v after %d bytes; want %q after %d", reply, line, err, read, want.line, want.lineEnd+1)
		}
	case want.overlong:
		if !errors.Is(err, vmm.ErrHandshake) || line != "" || read != maxHandshakeLine+1 {
			t.Fatalf("readLine of %q = %q, %v after %d bytes; want ErrHandshake after %d", reply, line, err, read, maxHandshakeLine+1)
		}
	default:
		wantErr := io.ErrUnexpectedEOF
		if len(reply) == 0 {
			wantErr = io.EOF
		}
		if err != wantErr || line != "" || read != len(reply) {
			t.Fatalf("readLine of %q = %q, %v after %d bytes; want %v", reply, line, err, read, wantErr)
		}
	}
}

// FuzzHybridVsockHandshake gives the host side of the hybrid vsock
// handshake arbitrary replies: readLine over a net.Pipe, and a whole
// attempt (hybridVsockOnce) over a unix socket whose peer then closes, or
// holds the connection open when hold is set.
func FuzzHybridVsockHandshake(f *testing.F) {
	for _, s := range []struct {
		reply string
		hold  bool
	}{
		{"OK 1073741824\n", false},
		{"OK 1073741824\nhello\n", true},
		{"OK 0\n", true},
		{"OK 4294967295\n", false},
		{"OK 4294967296\n", false},
		{"OK 007\n", true},
		{"OK +1\n", false},
		{"OK -1\n", false},
		{"OK 1_000\n", false},
		{"OK 12\r\n", false},
		{"OK \n", false},
		{"OK\n", false},
		{"ok 5\n", false},
		{" OK 5\n", false},
		{"ERR connection refused\n", true},
		{"OK 12", false},
		{"OK 12", true},
		{"", false},
		{"\n", false},
		{"OK 00000000000000000000000000001\n", true},
		{"OK 000000000000000000000000000001\n", true},
		{"OOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO", true},
	} {
		f.Add([]byte(s.reply), s.hold)
	}
	dir, err := os.MkdirTemp("", "vsockfuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "v.sock")
	const port = 1024
	f.Fuzz(func(t *testing.T, reply []byte, hold bool) {
		if len(reply) > 4096 {
			return // the socket buffers it: no write blocks
		}
		fuzzReadLine(t, reply)

		want := expectHandshake(reply)
		// A listener of this input's own: closing it ends an Accept the
		// dialer never reached.
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		type served struct {
			connect string
			err     error
		}
		done := make(chan served, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				done <- served{err: err}
				return
			}
			defer c.Close()
			// The CONNECT line, a byte at a time: nothing more comes.
			var line []byte
			var b [1]byte
			for len(line) < 64 && (len(line) == 0 || line[len(line)-1] != '\n') {
				if _, err := c.Read(b[:]); err != nil {
					done <- served{connect: string(line), err: err}
					return
				}
				line = append(line, b[0])
			}
			if _, err := c.Write(reply); err != nil {
				done <- served{connect: string(line), err: err}
				return
			}
			if hold {
				// Until the dialer closes: it must decide without EOF.
				io.Copy(io.Discard, c)
			}
			done <- served{connect: string(line)}
		}()

		timeout := 10 * time.Second
		if hold && want.undecided {
			timeout = 10 * time.Millisecond // only the deadline ends it
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		t0 := time.Now()
		c, retry, err := hybridVsockOnce(ctx, sock, port)
		took := time.Since(t0)
		if took > timeout+5*time.Second {
			t.Fatalf("reply %q (hold %t): the attempt took %s, past its %s deadline", reply, hold, took, timeout)
		}
		var rest []byte
		if c != nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			rest = make([]byte, len(reply)-want.lineEnd-1)
			if _, rerr := io.ReadFull(c, rest); rerr != nil {
				t.Errorf("reply %q: reading what follows the line: %v", reply, rerr)
			}
			c.Close()
		}
		l.Close()
		s := <-done
		if errors.Is(s.err, net.ErrClosed) && timeout < time.Second && c == nil && retry {
			return // the short deadline passed before the dial
		}
		if s.connect != "CONNECT 1024\n" || s.err != nil {
			t.Fatalf("reply %q: the peer read %q, %v", reply, s.connect, s.err)
		}

		switch {
		case want.complete && wellFormedOK(want.line):
			if err != nil || c == nil || retry {
				t.Fatalf("reply %q: got %v, %t, %v; want a connection", reply, c, retry, err)
			}
			// Nothing after the reply's newline is consumed.
			if !bytes.Equal(rest, reply[want.lineEnd+1:]) {
				t.Fatalf("reply %q: after the handshake the connection reads %q", reply, rest)
			}
		case want.complete, want.overlong:
			if c != nil || retry || !errors.Is(err, vmm.ErrHandshake) {
				t.Fatalf("reply %q: got %v, %t, %v; want ErrHandshake, no retry", reply, c, retry, err)
			}
		case hold:
			// Short and unfinished: the deadline ends the attempt, and
			// the caller's loop retries until its context ends.
			var ne net.Error
			if c != nil || !retry || !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("reply %q held open: got %v, %t, %v; want a timeout", reply, c, retry, err)
			}
		default:
			// Closed before a full line: nobody listens yet, retry.
			if c != nil || !retry || err == nil || errors.Is(err, vmm.ErrHandshake) {
				t.Fatalf("reply %q then close: got %v, %t, %v; want a retry", reply, c, retry, err)
			}
		}
	})
}
