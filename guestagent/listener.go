package guestagent

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// streamDevice is an open device that carries one byte stream in both
// directions: a virtio-serial port (*os.File) or, in tests, a net.Pipe end.
type streamDevice interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// deviceAddr names a device as a net.Addr.
type deviceAddr struct{ network, name string }

func (a deviceAddr) Network() string { return a.network }
func (a deviceAddr) String() string  { return a.name }

// deviceConn is a streamDevice as a net.Conn. Every read error ends the
// stream as io.EOF: ttrpc closes a connection promptly only on EOF, and a
// device error (the host side went away) means just that here.
type deviceConn struct {
	dev     streamDevice
	addr    deviceAddr
	once    sync.Once
	closed  chan struct{}
	onClose func()
	readErr func(error) // observes the error a read ended with
}

func (c *deviceConn) Read(p []byte) (int, error) {
	n, err := c.dev.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if c.readErr != nil {
			c.readErr(err)
		}
		err = io.EOF
	}
	return n, err
}

func (c *deviceConn) Write(p []byte) (int, error) { return c.dev.Write(p) }

func (c *deviceConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		err = c.dev.Close()
		close(c.closed)
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

func (c *deviceConn) LocalAddr() net.Addr                { return c.addr }
func (c *deviceConn) RemoteAddr() net.Addr               { return c.addr }
func (c *deviceConn) SetDeadline(t time.Time) error      { return c.dev.SetDeadline(t) }
func (c *deviceConn) SetReadDeadline(t time.Time) error  { return c.dev.SetReadDeadline(t) }
func (c *deviceConn) SetWriteDeadline(t time.Time) error { return c.dev.SetWriteDeadline(t) }

// deviceListener is a net.Listener over a device that carries one
// connection at a time. Accept opens the device and yields it as one
// net.Conn; the next Accept waits until that conn is closed, then opens the
// device again (the host may reconnect).
type deviceListener struct {
	addr deviceAddr
	// open opens the device; it may wait (for the host to connect) until
	// ctx ends.
	open func(ctx context.Context) (streamDevice, error)
	// readErr, if set, observes read errors that ended a connection.
	readErr func(error)

	ctx    context.Context
	cancel context.CancelFunc
	free   chan struct{} // holds a token while no conn is open
}

func newDeviceListener(addr deviceAddr, open func(ctx context.Context) (streamDevice, error)) *deviceListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &deviceListener{addr: addr, open: open, ctx: ctx, cancel: cancel, free: make(chan struct{}, 1)}
	l.free <- struct{}{}
	return l
}

// Accept waits for the previous conn to close, opens the device and returns
// it. After Close it returns net.ErrClosed.
func (l *deviceListener) Accept() (net.Conn, error) {
	select {
	case <-l.free:
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
	dev, err := l.open(l.ctx)
	if err != nil {
		l.free <- struct{}{}
		if l.ctx.Err() != nil {
			return nil, net.ErrClosed
		}
		// Temporary: ttrpc's Serve backs off and calls Accept again.
		return nil, &temporaryError{err}
	}
	return &deviceConn{
		dev:     dev,
		addr:    l.addr,
		closed:  make(chan struct{}),
		onClose: func() { l.free <- struct{}{} },
		readErr: l.readErr,
	}, nil
}

// Close stops Accept; a conn already handed out stays open until closed.
func (l *deviceListener) Close() error {
	l.cancel()
	return nil
}

func (l *deviceListener) Addr() net.Addr { return l.addr }

// temporaryError marks an Accept failure worth retrying (ttrpc's Serve looks
// for Temporary).
type temporaryError struct{ err error }

func (e *temporaryError) Error() string   { return e.err.Error() }
func (e *temporaryError) Unwrap() error   { return e.err }
func (e *temporaryError) Temporary() bool { return true }
