package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/containerd/log"
)

// Port forward (the CRI's PortForward, `crictl port-forward`): containerd
// enters the pod sandbox's network namespace on the host and dials
// 127.0.0.1:PORT there, but the pod's servers listen in the VM, which is
// attached to that namespace only through its tap. So the shim keeps, for
// each pod sandbox, one listener in the namespace that takes every TCP
// connection to 127.0.0.1 (portListener: network.LoopbackListener), and
// tunnels each one through the agent to 127.0.0.1:PORT in the VM
// (guestPort: runtime.PortConn), both ways, half-closes included. A
// connection whose guest port refuses, or that fails midway, is reset, so
// containerd reports an error rather than an empty answer.

// portListener is a pod's listener: Accept gives the connections made to
// 127.0.0.1 in the pod's network namespace, OriginalPort the port each
// was made to.
type portListener interface {
	net.Listener
	OriginalPort(c net.Conn) (int, error)
}

// listenPortsFunc opens the portListener of the network namespace at
// nsPath (listenPorts in production; tests replace it).
type listenPortsFunc func(nsPath string) (portListener, error)

// guestPort is one connection to a port of the VM's loopback
// (runtime.PortConn): Read returns io.EOF once the guest's side has
// closed its writing half.
type guestPort interface {
	Read(ctx context.Context, max int) ([]byte, error)
	Write(ctx context.Context, b []byte) error
	CloseWrite(ctx context.Context) error
	Close(ctx context.Context) error
}

// dialPortFunc connects to 127.0.0.1:port in the VM.
type dialPortFunc func(ctx context.Context, port uint32) (guestPort, error)

// portForward serves one pod's listener until Close.
type portForward struct {
	pod    string
	ln     portListener
	dial   dialPortFunc
	ctx    context.Context // cancelled by Close: ends the tunnels' guest calls
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // the host connections of live tunnels
}

// Bounds of a tunnel's work.
const (
	// portChunk is the most one guest write carries (and one guest read
	// asks for).
	portChunk = 32 << 10
	// portCloseTimeout bounds the guest's ClosePort at a tunnel's end.
	portCloseTimeout = 5 * time.Second
	// portForwardStopTimeout bounds Close's wait for the tunnels.
	portForwardStopTimeout = 10 * time.Second
	// acceptBackoff is the pause after a failed Accept (out of fds).
	acceptBackoff = 100 * time.Millisecond
)

// startPortForward serves ln for pod sandbox pod, dialing the VM's ports
// with dial.
func startPortForward(ctx context.Context, pod string, ln portListener, dial dialPortFunc) *portForward {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &portForward{pod: pod, ln: ln, dial: dial, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f
}

func (f *portForward) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.ctx.Err() != nil {
				return
			}
			log.G(f.ctx).WithError(err).Warnf("pod %q: port forward: accepting", f.pod)
			select {
			case <-time.After(acceptBackoff):
			case <-f.ctx.Done():
				return
			}
			continue
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			if err := f.tunnel(c); err != nil && f.ctx.Err() == nil {
				log.G(f.ctx).WithError(err).Infof("pod %q: port forward", f.pod)
			}
		}()
	}
}

// track records a live tunnel's connection; false once Close has begun.
func (f *portForward) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *portForward) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
}

// tunnel carries one accepted connection to its port in the VM. It
// returns when both directions have ended; c is closed (reset after a
// failure) and so is the guest's connection.
func (f *portForward) tunnel(c net.Conn) error {
	clean := false
	defer func() {
		if !clean {
			reset(c)
		} else {
			c.Close()
		}
	}()
	port, err := f.ln.OriginalPort(c)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("connection to port %d: not a TCP port", port)
	}
	g, err := f.dial(f.ctx, uint32(port))
	if err != nil {
		return err
	}
	closeGuest := sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), portCloseTimeout)
		defer cancel()
		return g.Close(ctx)
	})
	errc := make(chan error, 2)
	go func() { errc <- f.toGuest(c, g) }()
	go func() { errc <- f.toHost(g, c) }()
	if err := <-errc; err != nil {
		// One direction failed: end the other at once (the reset ends
		// its host read or write; closing the guest's connection, its
		// guest read or write).
		reset(c)
		_ = closeGuest()
		<-errc
		return fmt.Errorf("connection to port %d: %w", port, err)
	}
	if err := <-errc; err != nil {
		_ = closeGuest()
		return fmt.Errorf("connection to port %d: %w", port, err)
	}
	if err := closeGuest(); err != nil {
		return fmt.Errorf("connection to port %d: %w", port, err)
	}
	clean = true
	return nil
}

// toGuest copies what the host's client sends to the guest, then
// half-closes the guest's side at the client's end of file.
func (f *portForward) toGuest(c net.Conn, g guestPort) error {
	buf := make([]byte, portChunk)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if werr := g.Write(f.ctx, buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return g.CloseWrite(f.ctx)
		}
		if err != nil {
			return fmt.Errorf("reading from the host's client: %w", err)
		}
	}
}

// toHost copies what the guest's server sends to the host's client, then
// half-closes the client's side at the server's end of file.
func (f *portForward) toHost(g guestPort, c net.Conn) error {
	for {
		b, err := g.Read(f.ctx, portChunk)
		if errors.Is(err, io.EOF) {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil {
					return fmt.Errorf("half-closing the host's client: %w", err)
				}
			}
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := c.Write(b); err != nil {
			return fmt.Errorf("writing to the host's client: %w", err)
		}
	}
}

// reset closes c with a reset (SO_LINGER 0) rather than an end of file:
// containerd's port forward then reports an error for the stream.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Close stops the listener (in the namespace, nothing takes the
// connections any more), resets every live tunnel's connection, closes
// their guest connections and waits for their goroutines (up to
// portForwardStopTimeout).
func (f *portForward) Close() error {
	f.cancel()
	err := f.ln.Close()
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for c := range conns {
		reset(c)
	}
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(portForwardStopTimeout):
		log.G(f.ctx).Warnf("pod %q: port forward: tunnels still running %s after close", f.pod, portForwardStopTimeout)
	}
	if err != nil {
		return fmt.Errorf("pod %q: stopping port forward: %w", f.pod, err)
	}
	return nil
}
