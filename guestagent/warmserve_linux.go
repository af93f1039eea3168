package guestagent

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// warmServeTimeout bounds warmServe: the Ping, and srv letting go of its
// connection and listener.
const warmServeTimeout = 5 * time.Second

// warmServe runs a Ping through srv over a socket pair of its own, before
// a template's save: a clone's first request then finds what a first
// connection makes already made (ttrpc's connection and its goroutines,
// their grown stacks, the runtime's threads and the kernel's for them),
// and only translates the code that serves it (the first Ping of a clone
// from a template without it: 87-108 ms under TCG and 11-14k translated
// blocks; with it 58-70 ms, measured). It returns once srv has let go of
// the connection, so nothing of it is saved with the template.
func warmServe(srv *ttrpc.Server, timeout time.Duration) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("warming the server: socketpair: %w", err)
	}
	server, err := fileConn(fds[0], "warm-server")
	if err != nil {
		unix.Close(fds[1])
		return err
	}
	client, err := fileConn(fds[1], "warm-client")
	if err != nil {
		server.Close()
		return err
	}
	l := newOneConnListener(server)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := ttrpc.NewClient(client)
	_, perr := agentapi.NewAgentClient(c).Ping(ctx, &agentapi.PingRequest{})
	c.Close()
	var werr error
	select {
	case <-l.connClosed:
	case <-ctx.Done():
		werr = fmt.Errorf("warming the server: its connection still open after %s", timeout)
		server.Close()
	}
	l.Close()
	select {
	case <-served:
	case <-time.After(timeout):
		if werr == nil {
			werr = fmt.Errorf("warming the server: it still serves its listener after %s", timeout)
		}
	}
	if perr != nil {
		return fmt.Errorf("warming the server: ping: %w", perr)
	}
	return werr
}

// fileConn makes a net.Conn of a socket descriptor, which it takes over.
func fileConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("warming the server: %s: %w", name, err)
	}
	return c, nil
}

// oneConnListener hands out one connection, then waits for Close; its
// connClosed is closed once that connection is.
type oneConnListener struct {
	conn       net.Conn
	handed     chan struct{} // holds a token until the conn is handed out
	closed     chan struct{}
	closeOnce  sync.Once
	connClosed chan struct{}
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{handed: make(chan struct{}, 1), closed: make(chan struct{}), connClosed: make(chan struct{})}
	l.conn = &notifyConn{Conn: c, closed: l.connClosed}
	l.handed <- struct{}{}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case <-l.handed:
		return l.conn, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// notifyConn closes closed when it is closed.
type notifyConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}
