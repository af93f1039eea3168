package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// portConns are the agent's TCP connections to the guest's loopback for
// the host's port forward (DialPort and the other port calls): the host
// accepts a connection in the pod's network namespace and tunnels its
// bytes through these calls, as it does a process's stdio.
type portConns struct {
	// dial connects to 127.0.0.1:port in the agent's network namespace,
	// which a pod's containers share (they are given none of their own).
	dial func(ctx context.Context, port int) (net.Conn, error)

	mu     sync.Mutex
	last   uint64
	conns  map[uint64]net.Conn
	closed bool // Shutdown: no new connections
}

// maxPortConns bounds the connections open at once: each holds a socket
// and the host's pending calls.
const maxPortConns = 1024

// portDialTimeout bounds a dial: the loopback answers at once, but a
// listener whose backlog is full lets the SYN wait.
const portDialTimeout = 10 * time.Second

func newPortConns() *portConns {
	return &portConns{dial: dialLoopback, conns: map[uint64]net.Conn{}}
}

// dialLoopback connects to 127.0.0.1:port, else to [::1]:port (a server
// listening on IPv6 only), as containerd's own port forward tries tcp4
// first and then tcp6; the error is the IPv4 dial's.
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: portDialTimeout}
	p := strconv.Itoa(port)
	c, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return c, nil
	}
	if c6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
		return c6, nil
	}
	return nil, err
}

func (pc *portConns) open(ctx context.Context, port uint32) (uint64, error) {
	if port == 0 || port > 65535 {
		return 0, errorf(ErrInvalidArgument, "dialing port %d: not a TCP port", port)
	}
	pc.mu.Lock()
	n, closed := len(pc.conns), pc.closed
	pc.mu.Unlock()
	if closed {
		return 0, errorf(ErrFailedPrecondition, "dialing port %d: the agent is shutting down", port)
	}
	if n >= maxPortConns {
		return 0, errorf(ErrFailedPrecondition, "dialing port %d: %d port connections are open already", port, n)
	}
	c, err := pc.dial(ctx, int(port))
	if err != nil {
		return 0, fmt.Errorf("dialing 127.0.0.1:%d: %w", port, err)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		c.Close()
		return 0, errorf(ErrFailedPrecondition, "dialing port %d: the agent is shutting down", port)
	}
	pc.last++
	pc.conns[pc.last] = c
	return pc.last, nil
}

func (pc *portConns) get(op string, id uint64) (net.Conn, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	c, ok := pc.conns[id]
	if !ok {
		return nil, errorf(ErrNotFound, "%s port connection %d: no such connection", op, id)
	}
	return c, nil
}

// read returns the next bytes, at most max; nil at end of file, and once
// the connection was closed by close (a read pending then ends so).
func (pc *portConns) read(id uint64, max int) ([]byte, error) {
	c, err := pc.get("reading", id)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, max)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			return buf[:n], nil
		}
		if errors.Is(err, io.EOF) || !pc.isOpen(id) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading port connection %d: %w", id, err)
		}
	}
}

// isOpen says close has not been called for the connection.
func (pc *portConns) isOpen(id uint64) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	_, ok := pc.conns[id]
	return ok
}

func (pc *portConns) write(id uint64, data []byte) error {
	c, err := pc.get("writing", id)
	if err != nil {
		return err
	}
	if _, err := c.Write(data); err != nil {
		return fmt.Errorf("writing port connection %d: %w", id, err)
	}
	return nil
}

func (pc *portConns) closeWrite(id uint64) error {
	c, err := pc.get("half-closing", id)
	if err != nil {
		return err
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return errorf(ErrNotSupported, "half-closing port connection %d: %T cannot", id, c)
	}
	if err := cw.CloseWrite(); err != nil {
		return fmt.Errorf("half-closing port connection %d: %w", id, err)
	}
	return nil
}

// close closes and forgets one connection; an unknown one is not an
// error (the host closes every connection once, whatever happened).
func (pc *portConns) close(id uint64) error {
	pc.mu.Lock()
	c, ok := pc.conns[id]
	delete(pc.conns, id)
	pc.mu.Unlock()
	if !ok {
		return nil
	}
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("closing port connection %d: %w", id, err)
	}
	return nil
}

// closeAll closes every connection and refuses new ones (Shutdown).
func (pc *portConns) closeAll() {
	pc.mu.Lock()
	conns := pc.conns
	pc.conns = map[uint64]net.Conn{}
	pc.closed = true
	pc.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// DialPort connects to 127.0.0.1:port in the VM's network namespace.
func (s *Service) DialPort(ctx context.Context, req *agentapi.DialPortRequest) (*agentapi.DialPortResponse, error) {
	id, err := s.ports.open(ctx, req.Port)
	if err != nil {
		return nil, err
	}
	s.log.Debugf("port connection %d to 127.0.0.1:%d", id, req.Port)
	return &agentapi.DialPortResponse{Conn: id}, nil
}

// ReadPort returns the connection's next bytes; empty data means EOF.
func (s *Service) ReadPort(_ context.Context, req *agentapi.PortReadRequest) (*agentapi.ReadResponse, error) {
	data, err := s.ports.read(req.Conn, readLimit(req.MaxBytes))
	if err != nil {
		return nil, err
	}
	return &agentapi.ReadResponse{Data: data}, nil
}

// WritePort writes all of data to the connection.
func (s *Service) WritePort(_ context.Context, req *agentapi.PortWriteRequest) (*agentapi.Empty, error) {
	if err := s.ports.write(req.Conn, req.Data); err != nil {
		return nil, err
	}
	return &agentapi.Empty{}, nil
}

// ClosePortWrite closes the connection's writing half.
func (s *Service) ClosePortWrite(_ context.Context, req *agentapi.PortRequest) (*agentapi.Empty, error) {
	if err := s.ports.closeWrite(req.Conn); err != nil {
		return nil, err
	}
	return &agentapi.Empty{}, nil
}

// ClosePort closes the connection and forgets it.
func (s *Service) ClosePort(_ context.Context, req *agentapi.PortRequest) (*agentapi.Empty, error) {
	if err := s.ports.close(req.Conn); err != nil {
		return nil, err
	}
	return &agentapi.Empty{}, nil
}
