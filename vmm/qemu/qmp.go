package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// qmpMaxLine bounds one QMP message; the replies we ask for are tiny.
const qmpMaxLine = 64 << 10

// qmpDefaultTimeout bounds a QMP exchange when ctx has no deadline.
const qmpDefaultTimeout = 10 * time.Second

// qmpConn is one QMP session: greeting read, capabilities negotiated.
type qmpConn struct {
	c net.Conn
	r *bufio.Reader
}

// qmpMessage is any message qemu sends: greeting, reply or event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// qmpDial connects to the QMP socket at path and leaves capabilities
// negotiation mode; ctx's deadline (else qmpDefaultTimeout) bounds the
// whole session.
func qmpDial(ctx context.Context, path string) (_ *qmpConn, err error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(qmpDefaultTimeout)
	}
	if err := c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	q := &qmpConn{c: c, r: bufio.NewReaderSize(c, 4096)}
	m, err := q.read()
	if err != nil {
		return nil, fmt.Errorf("reading qmp greeting: %w", err)
	}
	if m.QMP == nil {
		return nil, fmt.Errorf("%w: qmp greeting without \"QMP\" member", vmm.ErrVMMRequest)
	}
	if _, err := q.execute("qmp_capabilities"); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.c.Close() }

// read returns the next message, at most qmpMaxLine bytes long.
func (q *qmpConn) read() (*qmpMessage, error) {
	var line []byte
	for {
		chunk, err := q.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > qmpMaxLine {
			return nil, fmt.Errorf("%w: qmp message longer than %d bytes", vmm.ErrVMMRequest, qmpMaxLine)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	var m qmpMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("%w: bad qmp message %.80q: %v", vmm.ErrVMMRequest, line, err)
	}
	return &m, nil
}

// execute runs one command and returns its "return" value, skipping the
// asynchronous events that may come first.
func (q *qmpConn) execute(command string) (json.RawMessage, error) {
	return q.executeArgs(command, nil)
}

// executeArgs is execute with arguments.
func (q *qmpConn) executeArgs(command string, args any) (json.RawMessage, error) {
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	req, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if _, err := q.c.Write(append(req, '\n')); err != nil {
		return nil, fmt.Errorf("sending qmp %s: %w", command, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("reading qmp %s reply: %w", command, err)
		}
		switch {
		case m.Error != nil:
			return nil, fmt.Errorf("%w: qmp %s: %s: %s", vmm.ErrVMMRequest, command, m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return m.Return, nil
		case m.Event != "":
			continue
		default:
			return nil, fmt.Errorf("%w: qmp %s: reply is neither return, error nor event", vmm.ErrVMMRequest, command)
		}
	}
}

// qmpRun runs one command in its own session. For "quit" qemu may close
// the socket before its reply arrives: that counts as success.
func qmpRun(ctx context.Context, path, command string) (json.RawMessage, error) {
	q, err := qmpDial(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("connecting to qmp socket %q: %w", path, err)
	}
	defer q.Close()
	ret, err := q.execute(command)
	if err != nil && command == "quit" && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
		return nil, nil
	}
	return ret, err
}

// qmpStatus returns query-status's "status" ("running", "paused", ...).
func qmpStatus(ctx context.Context, path string) (string, error) {
	q, err := qmpDial(ctx, path)
	if err != nil {
		return "", fmt.Errorf("connecting to qmp socket %q: %w", path, err)
	}
	defer q.Close()
	return queryStatus(q)
}

// queryStatus is query-status's "status" on an open session.
func queryStatus(q *qmpConn) (string, error) {
	ret, err := q.execute("query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil {
		return "", fmt.Errorf("%w: query-status reply %.80q: %v", vmm.ErrVMMRequest, ret, err)
	}
	return st.Status, nil
}
