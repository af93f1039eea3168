package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

const (
	// maxHandshakeLine bounds the "OK <port>\n" reply ("OK 4294967295\n"
	// is 14 bytes).
	maxHandshakeLine = 32
	// attemptTimeout bounds one handshake when ctx has no deadline.
	attemptTimeout = 5 * time.Second
	// retryInterval is the pause between attempts while the guest does not
	// listen yet.
	retryInterval = 50 * time.Millisecond
)

// DialHybridVsock connects to vsock port in the guest through
// cloud-hypervisor's hybrid vsock socket at path: it writes
// "CONNECT <port>\n" and reads the reply byte by byte, so nothing after
// the reply's newline is consumed. A socket that is missing, refuses, or
// closes before replying (nobody listens on the port yet) is retried until
// ctx ends (vmm.ErrAgentTimeout); a reply that is not "OK <number>" fails
// at once (vmm.ErrHandshake).
func DialHybridVsock(ctx context.Context, path string, port uint32) (net.Conn, error) {
	return dialHybridVsock(ctx, path, port, nil)
}

// dialHybridVsock is DialHybridVsock that also gives up when stop closes
// (the VMM exited), returning errStopped.
func dialHybridVsock(ctx context.Context, path string, port uint32, stop <-chan struct{}) (net.Conn, error) {
	for {
		c, retry, err := hybridVsockOnce(ctx, path, port)
		if err == nil {
			return c, nil
		}
		if !retry {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: hybrid vsock %q port %d: %v", vmm.ErrAgentTimeout, path, port, err)
		case <-stop:
			return nil, errStopped
		case <-time.After(retryInterval):
		}
	}
}

var errStopped = errors.New("stopped while dialing")

// hybridVsockOnce makes one attempt; retry says whether another may work.
func hybridVsockOnce(ctx context.Context, path string, port uint32) (_ net.Conn, retry bool, err error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, true, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(attemptTimeout)
	}
	if err := c.SetDeadline(deadline); err != nil {
		return nil, false, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return nil, true, fmt.Errorf("sending CONNECT %d: %w", port, err)
	}
	line, err := readLine(c, maxHandshakeLine)
	if err != nil {
		// Closed before a full line: nobody listens on the port yet.
		// A timeout ends the loop through ctx.
		return nil, !errors.Is(err, vmm.ErrHandshake), err
	}
	rest, ok := strings.CutPrefix(line, "OK ")
	if !ok {
		return nil, false, fmt.Errorf("%w: hybrid vsock %q port %d replied %q, want \"OK <port>\"", vmm.ErrHandshake, path, port, line)
	}
	// cloud-hypervisor writes the port as Rust's {} formats a u32: no sign,
	// no leading zero.
	if n, err := strconv.ParseUint(rest, 10, 32); err != nil || strconv.FormatUint(n, 10) != rest {
		return nil, false, fmt.Errorf("%w: hybrid vsock %q port %d replied %q: bad host port", vmm.ErrHandshake, path, port, line)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, false, err
	}
	return c, false, nil
}

// readLine reads one byte at a time up to '\n' (not included), at most max
// bytes; EOF before the newline is io.ErrUnexpectedEOF (or io.EOF when
// nothing came at all).
func readLine(r io.Reader, max int) (string, error) {
	buf := make([]byte, 0, max)
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(buf), nil
			}
			if len(buf) == max {
				return "", fmt.Errorf("%w: reply longer than %d bytes without a newline", vmm.ErrHandshake, max)
			}
			buf = append(buf, b[0])
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(buf) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}
