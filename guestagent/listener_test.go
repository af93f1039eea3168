package guestagent

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// pingOnly answers Ping; every other method panics (nil embedded interface).
type pingOnly struct {
	agentapi.AgentService
	version string
}

func (p *pingOnly) Ping(context.Context, *agentapi.PingRequest) (*agentapi.PingResponse, error) {
	return &agentapi.PingResponse{AgentVersion: p.version}, nil
}

// TestDeviceListenerReopens serves ttrpc over a listener whose device is one
// end of a net.Pipe, hangs up the host side, and checks that the listener
// opens the device again for the next host connection.
func TestDeviceListenerReopens(t *testing.T) {
	hostEnds := make(chan net.Conn, 4)
	var opens atomic.Int32
	l := newDeviceListener(deviceAddr{"virtio-serial", "test"}, func(ctx context.Context) (streamDevice, error) {
		opens.Add(1)
		guest, host := net.Pipe()
		hostEnds <- host
		return guest, nil
	})
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentapi.RegisterAgentService(srv, &pingOnly{version: "test"})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()

	for round := 1; round <= 3; round++ {
		var host net.Conn
		select {
		case host = <-hostEnds:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the listener did not open the device again", round)
		}
		client := ttrpc.NewClient(host)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := agentapi.NewAgentClient(client).Ping(ctx, &agentapi.PingRequest{})
		cancel()
		if err != nil || resp.AgentVersion != "test" {
			t.Fatalf("round %d: Ping = %v, %v", round, resp, err)
		}
		client.Close() // the host hangs up
	}
	if got := opens.Load(); got < 3 {
		t.Errorf("device opened %d times, want at least 3", got)
	}
	// Only one connection at a time: no fourth open before the third ended.
	// (The third ended above, so a fourth open happens; nothing beyond it.)
	time.Sleep(50 * time.Millisecond)
	if got := opens.Load(); got > 4 {
		t.Errorf("device opened %d times for 3 connections", got)
	}

	srv.Close()
	l.Close()
	select {
	case err := <-served:
		if !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end after Close")
	}
}

func TestDeviceListenerCloseUnblocksAccept(t *testing.T) {
	l := newDeviceListener(deviceAddr{"virtio-serial", "test"}, func(ctx context.Context) (streamDevice, error) {
		<-ctx.Done() // the host never connects
		return nil, ctx.Err()
	})
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestDeviceListenerOpenErrorIsTemporary(t *testing.T) {
	boom := errors.New("EBUSY")
	l := newDeviceListener(deviceAddr{"virtio-serial", "test"}, func(context.Context) (streamDevice, error) { return nil, boom })
	_, err := l.Accept()
	var temp interface{ Temporary() bool }
	if !errors.Is(err, boom) || !errors.As(err, &temp) || !temp.Temporary() {
		t.Fatalf("Accept = %v, want a temporary error wrapping %v", err, boom)
	}
	// The failed open gave the slot back: a second Accept tries again.
	if _, err := l.Accept(); !errors.Is(err, boom) {
		t.Fatalf("second Accept = %v", err)
	}
}

// eioDevice fails every read with EIO, as a virtio port can.
type eioDevice struct{ net.Conn }

func (eioDevice) Read([]byte) (int, error) { return 0, syscall.EIO }

func TestDeviceConnReadErrorIsEOF(t *testing.T) {
	guest, host := net.Pipe()
	defer host.Close()
	var seen error
	freed := 0
	c := &deviceConn{dev: eioDevice{guest}, closed: make(chan struct{}),
		readErr: func(err error) { seen = err }, onClose: func() { freed++ }}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("Read = %v, want io.EOF", err)
	}
	if !errors.Is(seen, syscall.EIO) {
		t.Errorf("readErr saw %v, want EIO", seen)
	}
	if err := c.Close(); err != nil {
		t.Errorf("first Close = %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	if freed != 1 {
		t.Errorf("onClose ran %d times, want once", freed)
	}
}
