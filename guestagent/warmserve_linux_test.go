package guestagent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// pingFunc answers Ping with f; every other method panics (nil embedded
// interface).
type pingFunc struct {
	agentapi.AgentService
	f func(context.Context) (*agentapi.PingResponse, error)
}

func (p *pingFunc) Ping(ctx context.Context, _ *agentapi.PingRequest) (*agentapi.PingResponse, error) {
	return p.f(ctx)
}

func TestWarmServe(t *testing.T) {
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var pings atomic.Int32
	agentapi.RegisterAgentService(srv, &pingFunc{f: func(context.Context) (*agentapi.PingResponse, error) {
		pings.Add(1)
		return &agentapi.PingResponse{AgentVersion: "warm"}, nil
	}})
	if err := warmServe(srv, 5*time.Second); err != nil {
		t.Fatalf("warmServe: %v", err)
	}
	if n := pings.Load(); n != 1 {
		t.Errorf("warmServe pinged %d times, want 1", n)
	}

	// The server still serves the transports that follow.
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r, err := agentapi.NewAgentClient(c).Ping(ctx, &agentapi.PingRequest{}); err != nil || r.AgentVersion != "warm" {
		t.Fatalf("Ping after warmServe: %v, %v", r, err)
	}
}

func TestWarmServeGivesUp(t *testing.T) {
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer func() {
		close(release)
		srv.Close()
	}()
	agentapi.RegisterAgentService(srv, &pingFunc{f: func(context.Context) (*agentapi.PingResponse, error) {
		<-release // a server that never answers
		return &agentapi.PingResponse{}, nil
	}})
	start := time.Now()
	err = warmServe(srv, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "warming the server") {
		t.Fatalf("warmServe of a server that never answers: %v, want an error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("warmServe gave up after %s, want about its 200ms bound", d)
	}
}
