package network

import (
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialIn connects to addr from inside the namespace at nsPath.
func dialIn(nsPath, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(nsPath, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	})
	return c, err
}

// loopbackNetns is a new namespace with lo up and a LoopbackListener in
// it (closed at cleanup).
func loopbackNetns(t *testing.T) (string, *LoopbackListener) {
	t.Helper()
	needRoot(t)
	ns := newNetns(t, "itest-lo")
	if err := LoopbackUp(ns); err != nil {
		t.Fatal(err)
	}
	l, err := ListenLoopback(ns)
	if err != nil {
		t.Fatalf("ListenLoopback: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return ns, l
}

func TestListenLoopback(t *testing.T) {
	ns, l := loopbackNetns(t)
	for _, port := range []int{80, 12345, l.Addr().(*net.TCPAddr).Port} {
		c, err := dialIn(ns, "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("dialing port %d in the namespace: %v", port, err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := l.OriginalPort(s); err != nil || got != port {
			t.Errorf("OriginalPort = %d, %v; want %d", got, err, port)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
			t.Errorf("read %q, %v; want ping", buf, err)
		}
		c.Close()
		s.Close()
	}
	// Another loopback address is not taken: no listener there.
	if _, err := dialIn(ns, "127.0.0.2:80"); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("dialing 127.0.0.2:80: %v, want connection refused", err)
	}
	// The host's namespace is untouched.
	if c, err := net.DialTimeout("tcp4", "127.0.0.1:1", time.Second); err == nil {
		c.Close()
		t.Error("127.0.0.1:1 on the host answered")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := dialIn(ns, "127.0.0.1:80"); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("dialing 127.0.0.1:80 after Close: %v, want connection refused", err)
	}
}

// A table a killed shim left behind is replaced.
func TestListenLoopbackReplaces(t *testing.T) {
	ns, old := loopbackNetns(t)
	old.TCPListener.Close() // its table stays
	l, err := ListenLoopback(ns)
	if err != nil {
		t.Fatalf("ListenLoopback over a stale table: %v", err)
	}
	defer l.Close()
	c, err := dialIn(ns, "127.0.0.1:8080")
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer c.Close()
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := l.OriginalPort(s); err != nil || got != 8080 {
		t.Errorf("OriginalPort = %d, %v; want 8080", got, err)
	}
}

func TestListenLoopbackNoNamespace(t *testing.T) {
	needRoot(t)
	if l, err := ListenLoopback("/nonexistent/netns"); err == nil {
		l.Close()
		t.Fatal("ListenLoopback of a missing namespace succeeded")
	}
}
