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
// and only translates the code that serves it (a clone's first Ping under
// TCG: 82-108 ms and 11-14k translated blocks without it, 67-77 ms and
// about 10k with it, measured). It returns once srv has let go of the
// connection, so nothing of it is saved with the template.
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
	// One connection at a time, as over the agent's port: the listener
	// opens its next only once srv has closed the first, which is when
	// released closes; that next open waits for the listener's Close.
	first := make(chan net.Conn, 1)
	first <- server
	released := make(chan struct{})
	var releaseOnce sync.Once
	l := newDeviceListener(deviceAddr{"socketpair", "warm"}, func(ctx context.Context) (streamDevice, error) {
		select {
		case c := <-first:
			return c, nil
		default:
		}
		releaseOnce.Do(func() { close(released) })
		<-ctx.Done()
		return nil, ctx.Err()
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := ttrpc.NewClient(client)
	_, perr := agentapi.NewAgentClient(c).Ping(ctx, &agentapi.PingRequest{})
	c.Close()
	var werr error
	select {
	case <-released:
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
