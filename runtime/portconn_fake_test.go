package runtime

import (
	"context"
	"fmt"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// fakePorts are the fake agent's port connections: every DialPort but of
// refused succeeds, each ReadPort returns the next of replies (then end
// of file), writes and half-closes are recorded.
type fakePorts struct {
	refused uint32
	replies [][]byte
	// oversize makes ReadPort return more than asked for.
	oversize bool

	dialed     []uint32
	written    map[uint64][]byte
	halfClosed map[uint64]bool
	closed     map[uint64]bool
	read       map[uint64]int
}

func (a *fakeAgent) DialPort(_ context.Context, r *agentapi.DialPortRequest) (*agentapi.DialPortResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := &a.ports
	if r.Port == p.refused {
		return nil, fmt.Errorf("dialing 127.0.0.1:%d: connect: connection refused", r.Port)
	}
	p.dialed = append(p.dialed, r.Port)
	return &agentapi.DialPortResponse{Conn: uint64(len(p.dialed))}, nil
}

func (a *fakeAgent) ReadPort(_ context.Context, r *agentapi.PortReadRequest) (*agentapi.ReadResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := &a.ports
	if p.read == nil {
		p.read = map[uint64]int{}
	}
	if p.oversize {
		return &agentapi.ReadResponse{Data: make([]byte, r.MaxBytes+1)}, nil
	}
	i := p.read[r.Conn]
	if i >= len(p.replies) {
		return &agentapi.ReadResponse{}, nil
	}
	p.read[r.Conn]++
	return &agentapi.ReadResponse{Data: p.replies[i]}, nil
}

func (a *fakeAgent) WritePort(_ context.Context, r *agentapi.PortWriteRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := &a.ports
	if p.written == nil {
		p.written = map[uint64][]byte{}
	}
	p.written[r.Conn] = append(p.written[r.Conn], r.Data...)
	return &agentapi.Empty{}, nil
}

func (a *fakeAgent) ClosePortWrite(_ context.Context, r *agentapi.PortRequest) (*agentapi.Empty, error) {
	return a.markPort(&a.ports.halfClosed, r.Conn)
}

func (a *fakeAgent) ClosePort(_ context.Context, r *agentapi.PortRequest) (*agentapi.Empty, error) {
	return a.markPort(&a.ports.closed, r.Conn)
}

// markPort records conn in the set *m.
func (a *fakeAgent) markPort(m *map[uint64]bool, conn uint64) (*agentapi.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if *m == nil {
		*m = map[uint64]bool{}
	}
	(*m)[conn] = true
	return &agentapi.Empty{}, nil
}
