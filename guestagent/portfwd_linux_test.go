package guestagent

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// echoServer listens on the test's loopback; each connection reads to end
// of file and then answers "got:" and what it read, and closes.
func echoServer(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("got:"), b...))
			}()
		}
	}()
	return ln
}

// dialTo makes a service whose DialPort connects to ln whatever the port,
// and records the ports asked for.
func dialTo(t *testing.T, ln *net.TCPListener, ports *[]int) *Service {
	t.Helper()
	s, _, _ := newTestService(t)
	s.ports.dial = func(ctx context.Context, port int) (net.Conn, error) {
		*ports = append(*ports, port)
		return net.Dial("tcp4", ln.Addr().String())
	}
	return s
}

func readAllPort(ctx context.Context, t *testing.T, s *Service, id uint64, max uint32) string {
	t.Helper()
	var b strings.Builder
	for {
		r, err := s.ReadPort(ctx, &agentapi.PortReadRequest{Conn: id, MaxBytes: max})
		if err != nil {
			t.Fatalf("ReadPort: %v", err)
		}
		if uint32(len(r.Data)) > max {
			t.Fatalf("ReadPort returned %d bytes, max %d", len(r.Data), max)
		}
		if len(r.Data) == 0 {
			return b.String()
		}
		b.Write(r.Data)
	}
}

func TestPortRoundTrip(t *testing.T) {
	var ports []int
	s := dialTo(t, echoServer(t), &ports)
	ctx := ctx5s(t)
	d, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: 8080})
	if err != nil {
		t.Fatalf("DialPort: %v", err)
	}
	if len(ports) != 1 || ports[0] != 8080 {
		t.Errorf("dialed ports %v, want [8080]", ports)
	}
	for _, part := range []string{"hello ", "world"} {
		if _, err := s.WritePort(ctx, &agentapi.PortWriteRequest{Conn: d.Conn, Data: []byte(part)}); err != nil {
			t.Fatalf("WritePort: %v", err)
		}
	}
	// The server answers only after end of file: the half-close carries it,
	// and the answer still comes back.
	if _, err := s.ClosePortWrite(ctx, &agentapi.PortRequest{Conn: d.Conn}); err != nil {
		t.Fatalf("ClosePortWrite: %v", err)
	}
	if got := readAllPort(ctx, t, s, d.Conn, 3); got != "got:hello world" {
		t.Errorf("read %q, want %q", got, "got:hello world")
	}
	if _, err := s.ClosePort(ctx, &agentapi.PortRequest{Conn: d.Conn}); err != nil {
		t.Fatalf("ClosePort: %v", err)
	}
	// Closed: forgotten; a second close is fine.
	if _, err := s.ReadPort(ctx, &agentapi.PortReadRequest{Conn: d.Conn}); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadPort after ClosePort: %v, want ErrNotFound", err)
	}
	if _, err := s.ClosePort(ctx, &agentapi.PortRequest{Conn: d.Conn}); err != nil {
		t.Errorf("second ClosePort: %v", err)
	}
	// Ids are never reused.
	d2, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	if d2.Conn == d.Conn {
		t.Errorf("connection id %d reused", d.Conn)
	}
}

func TestPortErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp4", Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name    string
		port    uint32
		dialErr error
		want    error  // errors.Is
		wantMsg string // in the message
	}{
		{name: "port 0", port: 0, want: ErrInvalidArgument, wantMsg: "dialing port 0: not a TCP port"},
		{name: "port too big", port: 65536, want: ErrInvalidArgument, wantMsg: "not a TCP port"},
		{name: "refused", port: 81, dialErr: refused, want: syscall.ECONNREFUSED, wantMsg: "dialing 127.0.0.1:81: dial tcp4: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := newTestService(t)
			s.ports.dial = func(context.Context, int) (net.Conn, error) {
				if tc.dialErr != nil {
					return nil, tc.dialErr
				}
				a, _ := net.Pipe()
				return a, nil
			}
			_, err := s.DialPort(ctx5s(t), &agentapi.DialPortRequest{Port: tc.port})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("DialPort(%d) = %v, want %v containing %q", tc.port, err, tc.want, tc.wantMsg)
			}
		})
	}
	// Unknown connections.
	s, _, _ := newTestService(t)
	ctx := ctx5s(t)
	for name, call := range map[string]func() error{
		"read": func() error { _, err := s.ReadPort(ctx, &agentapi.PortReadRequest{Conn: 7}); return err },
		"write": func() error {
			_, err := s.WritePort(ctx, &agentapi.PortWriteRequest{Conn: 7, Data: []byte("x")})
			return err
		},
		"half": func() error { _, err := s.ClosePortWrite(ctx, &agentapi.PortRequest{Conn: 7}); return err },
	} {
		if err := call(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "port connection 7: no such connection") {
			t.Errorf("%s of an unknown connection: %v, want ErrNotFound", name, err)
		}
	}
}

// A connection limit, and Shutdown closing every connection (a pending
// read ends at end of file) and refusing new ones.
func TestPortLimitAndShutdown(t *testing.T) {
	s, _, _ := newTestService(t)
	var peers []net.Conn
	s.ports.dial = func(context.Context, int) (net.Conn, error) {
		a, b := net.Pipe()
		peers = append(peers, b)
		return a, nil
	}
	ctx := ctx5s(t)
	var first uint64
	for i := range maxPortConns {
		d, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: 80})
		if err != nil {
			t.Fatalf("DialPort %d: %v", i, err)
		}
		if i == 0 {
			first = d.Conn
		}
	}
	if _, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: 80}); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("DialPort over the limit: %v, want ErrFailedPrecondition", err)
	}
	read := make(chan error, 1)
	go func() {
		r, err := s.ReadPort(ctx, &agentapi.PortReadRequest{Conn: first})
		if err == nil && len(r.Data) != 0 {
			err = errors.New("data")
		}
		read <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := s.Shutdown(ctx, &agentapi.Empty{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if err != nil {
			t.Errorf("pending ReadPort at Shutdown: %v, want end of file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending ReadPort did not end at Shutdown")
	}
	if _, err := peers[1].Write([]byte("x")); err == nil {
		t.Error("a connection stayed open after Shutdown")
	}
	if _, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: 80}); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("DialPort after Shutdown: %v, want ErrFailedPrecondition", err)
	}
}

// A reset by the guest's server reaches the host as an error, not as end
// of file (the host then resets its side too).
func TestPortReset(t *testing.T) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed := make(chan struct{})
	go func() {
		c, err := ln.AcceptTCP()
		<-dialed
		if err == nil {
			c.SetLinger(0)
			c.Close()
		}
	}()
	var ports []int
	s := dialTo(t, ln, &ports)
	ctx := ctx5s(t)
	d, err := s.DialPort(ctx, &agentapi.DialPortRequest{Port: 80})
	close(dialed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadPort(ctx, &agentapi.PortReadRequest{Conn: d.Conn}); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("ReadPort of a reset connection: %v, want ECONNRESET", err)
	}
}

// dialLoopback reaches a server on 127.0.0.1, else one on ::1 only, and
// reports the IPv4 error when neither listens.
func TestDialLoopback(t *testing.T) {
	ctx := ctx5s(t)
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("no listener on %s here: %v", addr, err)
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := dialLoopback(ctx, port)
		if err != nil {
			t.Errorf("dialLoopback(%d) with a listener on %s: %v", port, addr, err)
		} else {
			c.Close()
		}
		ln.Close()
		if _, err := dialLoopback(ctx, port); !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("dialLoopback(%d) without a listener: %v, want the IPv4 dial's connection refused", port, err)
		}
	}
}
