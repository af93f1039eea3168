package cloudhypervisor

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// hybridPeer is an in-process stand-in for cloud-hypervisor's hybrid vsock
// socket: for the n-th connection (from 1) it reads the CONNECT line and
// then runs serve(n, conn, line).
type hybridPeer struct {
	path  string
	conns atomic.Int32
	lines chan string
}

func newHybridPeer(t *testing.T, path string, serve func(n int, c net.Conn)) *hybridPeer {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &hybridPeer{path: path, lines: make(chan string, 100)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := int(p.conns.Add(1))
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
				if err != nil {
					return
				}
				p.lines <- strings.TrimSuffix(line, "\n")
				serve(n, c)
			}()
		}
	}()
	return p
}

func TestDialHybridVsock(t *testing.T) {
	// ok replies and then sends payload in the same write: the dialer
	// must leave the payload unread.
	ok := func(_ int, c net.Conn) {
		c.Write([]byte("OK 1073741824\nhello\n"))
		io.Copy(c, c)
	}
	tests := []struct {
		name      string
		serve     func(n int, c net.Conn)
		late      time.Duration // create the socket only after this
		timeout   time.Duration
		wantErr   error
		wantConns int32 // connections the peer saw (0: don't check)
	}{
		{"ok", ok, 0, 5 * time.Second, nil, 1},
		{"closes twice, then ok", func(n int, c net.Conn) {
			if n <= 2 {
				return // close: the agent does not listen yet
			}
			ok(n, c)
		}, 0, 5 * time.Second, nil, 3},
		{"socket appears late", ok, 200 * time.Millisecond, 5 * time.Second, nil, 1},
		{"garbage reply", func(_ int, c net.Conn) { c.Write([]byte("ERR connection refused\n")) }, 0, 5 * time.Second, vmm.ErrHandshake, 1},
		{"bad host port", func(_ int, c net.Conn) { c.Write([]byte("OK port\n")) }, 0, 5 * time.Second, vmm.ErrHandshake, 1},
		{"host port with a leading zero", func(_ int, c net.Conn) { c.Write([]byte("OK 0001\n")) }, 0, 5 * time.Second, vmm.ErrHandshake, 1},
		{"overlong line", func(_ int, c net.Conn) { c.Write([]byte(strings.Repeat("O", 100))); time.Sleep(time.Second) }, 0, 5 * time.Second, vmm.ErrHandshake, 1},
		{"always closes: deadline", func(int, net.Conn) {}, 0, 300 * time.Millisecond, vmm.ErrAgentTimeout, 0},
		{"never replies: deadline", func(_ int, c net.Conn) { time.Sleep(2 * time.Second) }, 0, 300 * time.Millisecond, vmm.ErrAgentTimeout, 1},
		{"partial line then close", func(_ int, c net.Conn) { c.Write([]byte("OK 12")) }, 0, 300 * time.Millisecond, vmm.ErrAgentTimeout, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var peer *hybridPeer
			path := filepath.Join(t.TempDir(), "vsock.sock")
			if tt.late == 0 {
				peer = newHybridPeer(t, path, tt.serve)
			} else {
				// Listen elsewhere and move the socket into place later.
				peer = newHybridPeer(t, path+".tmp", tt.serve)
				go func() {
					time.Sleep(tt.late)
					if err := os.Rename(path+".tmp", path); err != nil {
						t.Error(err)
					}
				}()
			}
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			c, err := DialHybridVsock(ctx, path, AgentPort)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DialHybridVsock = %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr == vmm.ErrHandshake && time.Since(t0) > tt.timeout/2 {
					t.Errorf("handshake error took %s: it must not be retried", time.Since(t0))
				}
				if tt.wantErr == vmm.ErrAgentTimeout && time.Since(t0) < tt.timeout {
					t.Errorf("gave up after %s, before the %s deadline", time.Since(t0), tt.timeout)
				}
			} else {
				if err != nil {
					t.Fatalf("DialHybridVsock: %v", err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				got, err := bufio.NewReader(c).ReadString('\n')
				if err != nil || got != "hello\n" {
					t.Fatalf("payload after handshake = %q, %v", got, err)
				}
				c.Write([]byte("echo\n"))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "echo\n" {
					t.Errorf("echo = %q, %v", buf, err)
				}
			}
			if tt.wantConns != 0 && peer.conns.Load() != tt.wantConns {
				t.Errorf("peer saw %d connections, want %d", peer.conns.Load(), tt.wantConns)
			}
			select {
			case l := <-peer.lines:
				if l != "CONNECT 1024" {
					t.Errorf("peer read %q, want CONNECT 1024", l)
				}
			default:
				if tt.wantConns != 0 {
					t.Error("peer read no CONNECT line")
				}
			}
		})
	}
}

func TestDialHybridVsockStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	stop := make(chan struct{})
	go func() { time.Sleep(100 * time.Millisecond); close(stop) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := dialHybridVsock(ctx, path, AgentPort, stop); !errors.Is(err, errStopped) {
		t.Fatalf("dialHybridVsock = %v, want errStopped", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("dialer created %s", path)
	}
}
