package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// editSpec rewrites the config.json of bundle dir.
func editSpec(t *testing.T, dir string, edit func(*specs.Spec)) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	edit(&sp)
	if b, err = json.Marshal(&sp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakePortListener is a real listener on the test's loopback standing in
// for the pod namespace's: every connection "was made to" port (or
// OriginalPort fails with origErr).
type fakePortListener struct {
	*net.TCPListener
	port    int
	origErr error
	closed  atomic.Bool
}

func newFakePortListener(t *testing.T, port int) *fakePortListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakePortListener{TCPListener: ln, port: port}
}

func (l *fakePortListener) OriginalPort(net.Conn) (int, error) { return l.port, l.origErr }

func (l *fakePortListener) Close() error {
	l.closed.Store(true)
	return l.TCPListener.Close()
}

// tcpGuestPort is a guestPort over a real TCP connection to a test
// server standing in for the guest's, as the agent's connections are.
type tcpGuestPort struct {
	c      *net.TCPConn
	closes *atomic.Int32
}

func (g *tcpGuestPort) Read(_ context.Context, max int) ([]byte, error) {
	b := make([]byte, max)
	n, err := g.c.Read(b)
	if n > 0 {
		return b[:n], nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil, io.EOF
	}
	return nil, err
}

func (g *tcpGuestPort) Write(_ context.Context, b []byte) error {
	_, err := g.c.Write(b)
	return err
}

func (g *tcpGuestPort) CloseWrite(context.Context) error { return g.c.CloseWrite() }

func (g *tcpGuestPort) Close(context.Context) error {
	g.closes.Add(1)
	return g.c.Close()
}

// guestServer is a test server standing in for the pod's, with a dial
// function that connects to it and counts the guest connections opened
// and closed.
type guestServer struct {
	ln      *net.TCPListener
	dialed  []uint32
	mu      sync.Mutex
	opened  atomic.Int32
	closes  atomic.Int32
	refused bool
}

func newGuestServer(t *testing.T, serve func(c *net.TCPConn)) *guestServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return &guestServer{ln: ln}
}

func (g *guestServer) dial(_ context.Context, port uint32) (guestPort, error) {
	g.mu.Lock()
	g.dialed = append(g.dialed, port)
	g.mu.Unlock()
	if g.refused {
		return nil, fmt.Errorf("connecting to port %d in the VM: dial tcp4 127.0.0.1:%d: connection refused", port, port)
	}
	c, err := net.DialTCP("tcp4", nil, g.ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, err
	}
	g.opened.Add(1)
	return &tcpGuestPort{c: c, closes: &g.closes}, nil
}

// Servers of the guest.
var (
	// answerAfterEOF reads to end of file, then answers and closes.
	answerAfterEOF = func(c *net.TCPConn) {
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write(append([]byte("got:"), b...))
	}
	// echo copies back until end of file, then closes.
	echo = func(c *net.TCPConn) {
		defer c.Close()
		io.Copy(c, c)
	}
	// greetAndClose speaks first and closes without reading.
	greetAndClose = func(c *net.TCPConn) {
		c.Write([]byte("bye"))
		c.CloseWrite()
		io.Copy(io.Discard, c)
		c.Close()
	}
	// resetAfterRead resets the connection once something arrived.
	resetAfterRead = func(c *net.TCPConn) {
		c.Read(make([]byte, 1))
		c.SetLinger(0)
		c.Close()
	}
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestPortForwardTunnel(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: many chunks
	for _, tc := range []struct {
		name    string
		serve   func(*net.TCPConn)
		refused bool
		origErr error
		send    []byte
		half    bool   // the client half-closes after sending
		want    string // what the client reads to its end
		wantErr error  // the client's read error instead (errors.Is)
	}{
		{name: "request, half-close, reply", serve: answerAfterEOF, send: []byte("GET /"), half: true, want: "got:GET /"},
		{name: "echo of 1 MiB", serve: echo, send: big, half: true, want: string(big)},
		{name: "server speaks first and closes", serve: greetAndClose, want: "bye"},
		{name: "refused guest port", serve: echo, refused: true, send: []byte("x"), wantErr: syscall.ECONNRESET},
		{name: "server resets", serve: resetAfterRead, send: []byte("x"), wantErr: syscall.ECONNRESET},
		{name: "no original destination", serve: echo, origErr: errors.New("reading the original destination: no conntrack entry"), wantErr: syscall.ECONNRESET},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGuestServer(t, tc.serve)
			g.refused = tc.refused
			ln := newFakePortListener(t, 8080)
			ln.origErr = tc.origErr
			f := startPortForward(context.Background(), "pod", ln, g.dial)
			defer f.Close()

			c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
			if err != nil {
				// The reset can beat the connect's own return.
				if tc.wantErr == nil || !errors.Is(err, tc.wantErr) {
					t.Fatal(err)
				}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails, not blocks
			sent := make(chan error, 1)
			go func() {
				_, err := c.Write(tc.send)
				if err == nil && tc.half {
					err = c.CloseWrite()
				}
				sent <- err
			}()
			got, err := io.ReadAll(c)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("client read %d bytes, %v; want %v", len(got), err, tc.wantErr)
				}
			} else {
				if err != nil || string(got) != tc.want {
					t.Errorf("client read %.40q (%d bytes), %v; want %.40q (%d bytes)", got, len(got), err, tc.want, len(tc.want))
				}
				if err := <-sent; err != nil {
					t.Errorf("client write: %v", err)
				}
			}
			if tc.origErr == nil {
				g.mu.Lock()
				if len(g.dialed) != 1 || g.dialed[0] != 8080 {
					t.Errorf("guest ports dialed %v, want [8080]", g.dialed)
				}
				g.mu.Unlock()
			}
			c.Close()
			// Every guest connection opened is closed once the tunnel ends.
			waitFor(t, "the guest connection's close", func() bool { return g.closes.Load() >= g.opened.Load() })
			waitFor(t, "the tunnel's end", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.conns) == 0 })
		})
	}
}

// Close ends live tunnels (the client sees its connection end, the guest
// connection is closed), stops the listener and leaves no goroutine.
func TestPortForwardClose(t *testing.T) {
	g := newGuestServer(t, echo)
	ln := newFakePortListener(t, 80)
	f := startPortForward(context.Background(), "pod", ln, g.dial)
	var clients []*net.TCPConn
	for range 3 {
		c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// One round trip: the tunnel is up.
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		clients = append(clients, c)
	}
	done := make(chan error, 1)
	go func() { done <- f.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if !ln.closed.Load() {
		t.Error("the listener is still open")
	}
	for i, c := range clients {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("client %d: its connection outlived Close", i)
		}
	}
	if g.closes.Load() != 3 {
		t.Errorf("%d guest connections closed, want 3", g.closes.Load())
	}
	// A second Close is harmless.
	_ = f.Close()
}

// A pod sandbox with a network namespace gets a port forward on it, which
// its deletion closes; containers without a sandbox's kind get none.
func TestSandboxPortForward(t *testing.T) {
	s, _, vms := testService(t)
	ctx := context.Background()
	var listened []string
	var lns []*fakePortListener
	s.listenPorts = func(ns string) (portListener, error) {
		listened = append(listened, ns)
		l := newFakePortListener(t, 80)
		lns = append(lns, l)
		return l, nil
	}
	withNetns := func(dir string) string {
		editSpec(t, dir, func(sp *specs.Spec) {
			sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/cni-test"})
		})
		return dir
	}
	sb := map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "pod"}
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "pod", Bundle: withNetns(writeBundle(t, []string{"pause"}, sb))}); err != nil {
		t.Fatal(err)
	}
	member := map[string]string{annotationContainerType: "container", annotationSandboxID: "pod"}
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "app", Bundle: withNetns(writeBundle(t, []string{"httpd"}, member))}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "solo", Bundle: withNetns(writeBundle(t, []string{"httpd"}, nil))}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(listened, ",") != "/run/netns/cni-test" {
		t.Fatalf("listened in %v, want the sandbox's namespace once", listened)
	}
	// A connection reaches the sandbox's VM.
	v := vmOf(t, vms, "pod")
	g := newGuestServer(t, answerAfterEOF)
	v.mu.Lock()
	v.dialPort = g.dial
	v.mu.Unlock()
	c, err := net.DialTCP("tcp4", nil, lns[0].Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "got:ping" {
		t.Errorf("through the pod's port forward: %q, %v", got, err)
	}
	c.Close()

	for _, id := range []string{"app", "pod"} {
		vmOf(t, vms, "pod").proc(id).end(0)
		if _, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: id}); err != nil {
			t.Fatalf("Delete %s: %v", id, err)
		}
		if closed := lns[0].closed.Load(); closed != (id == "pod") {
			t.Errorf("after deleting %s: listener closed %v", id, closed)
		}
	}
}

// A namespace the listener cannot be opened in leaves the pod running.
func TestSandboxPortForwardListenFails(t *testing.T) {
	s, _, _ := testService(t)
	s.listenPorts = func(ns string) (portListener, error) {
		return nil, fmt.Errorf("listening on the loopback of network namespace %q: operation not permitted", ns)
	}
	dir := writeBundle(t, []string{"pause"}, map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "pod"})
	editSpec(t, dir, func(sp *specs.Spec) {
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/cni-test"})
	})
	if _, err := s.Create(context.Background(), &taskAPI.CreateTaskRequest{ID: "pod", Bundle: dir}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	c, err := s.container("pod")
	if err != nil {
		t.Fatal(err)
	}
	if c.ports != nil {
		t.Error("a port forward without a listener")
	}
}
