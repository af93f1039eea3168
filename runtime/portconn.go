package runtime

import (
	"context"
	"fmt"
	"io"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// PortConn is a TCP connection the guest agent made to 127.0.0.1:Port in
// the VM (DialPort), carried over the agent's calls: the host side of the
// CRI's port forward (shim/portforward.go).
type PortConn struct {
	Port uint32
	id   uint64
	inst *Instance
}

// MaxPortRead is the most one Read asks the guest for.
const MaxPortRead = 64 << 10

// DialPort has the agent connect to 127.0.0.1:port in the VM's network
// namespace, the pod's. A port nobody listens on fails here.
func (inst *Instance) DialPort(ctx context.Context, port uint32) (*PortConn, error) {
	var resp *agentapi.DialPortResponse
	err := inst.call(ctx, callTimeout, func(ctx context.Context) error {
		var err error
		resp, err = inst.Agent.DialPort(ctx, &agentapi.DialPortRequest{Port: port})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to port %d in the VM of container %q: %w", port, inst.ID, err)
	}
	return &PortConn{Port: port, id: resp.Conn, inst: inst}, nil
}

// Read returns the connection's next bytes, at most max (MaxPortRead
// when larger); io.EOF once the guest's side has closed its writing half.
// It waits for data without a deadline: Close, or the VM's end, ends it.
func (c *PortConn) Read(ctx context.Context, max int) ([]byte, error) {
	if max <= 0 || max > MaxPortRead {
		max = MaxPortRead
	}
	var resp *agentapi.ReadResponse
	err := c.inst.call(ctx, 0, func(ctx context.Context) error {
		var err error
		resp, err = c.inst.Agent.ReadPort(ctx, &agentapi.PortReadRequest{Conn: c.id, MaxBytes: uint32(max)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading port %d of container %q: %w", c.Port, c.inst.ID, err)
	}
	if len(resp.Data) > max {
		// The guest is not trusted to keep to the bound.
		return nil, fmt.Errorf("reading port %d of container %q: the agent sent %d bytes, %d asked for", c.Port, c.inst.ID, len(resp.Data), max)
	}
	if len(resp.Data) == 0 {
		return nil, io.EOF
	}
	return resp.Data, nil
}

// Write writes all of b; it waits while the guest's server does not read
// (no deadline: Close, or the VM's end, ends it).
func (c *PortConn) Write(ctx context.Context, b []byte) error {
	err := c.inst.call(ctx, 0, func(ctx context.Context) error {
		_, err := c.inst.Agent.WritePort(ctx, &agentapi.PortWriteRequest{Conn: c.id, Data: b})
		return err
	})
	if err != nil {
		return fmt.Errorf("writing port %d of container %q: %w", c.Port, c.inst.ID, err)
	}
	return nil
}

// CloseWrite closes the writing half: the guest's server reads end of file.
func (c *PortConn) CloseWrite(ctx context.Context) error {
	err := c.inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := c.inst.Agent.ClosePortWrite(ctx, &agentapi.PortRequest{Conn: c.id})
		return err
	})
	if err != nil {
		return fmt.Errorf("half-closing port %d of container %q: %w", c.Port, c.inst.ID, err)
	}
	return nil
}

// Close closes the connection in the guest; a pending Read ends.
func (c *PortConn) Close(ctx context.Context) error {
	err := c.inst.call(ctx, callTimeout, func(ctx context.Context) error {
		_, err := c.inst.Agent.ClosePort(ctx, &agentapi.PortRequest{Conn: c.id})
		return err
	})
	if err != nil {
		return fmt.Errorf("closing port %d of container %q: %w", c.Port, c.inst.ID, err)
	}
	return nil
}
