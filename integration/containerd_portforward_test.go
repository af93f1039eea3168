package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to write from a command's copier
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var forwardingFrom = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)`)

// criPortForward is a `crictl port-forward` running in the background.
type criPortForward struct {
	local  int // the local port it listens on
	stderr *syncBuffer
	stop   func()
}

// portForward runs `crictl port-forward POD :port` in the background
// until stop (or the test's end).
func (c *containerd) portForward(t testing.TB, p *criPod, port int) *criPortForward {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.command(ctx, "crictl", "port-forward", p.id, fmt.Sprintf(":%d", port))
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("crictl port-forward: %v", err)
	}
	stop := sync.OnceFunc(func() {
		cancel()
		_ = cmd.Wait()
	})
	t.Cleanup(stop)
	local := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := forwardingFrom.FindStringSubmatch(sc.Text()); m != nil && m[2] == strconv.Itoa(port) {
				n, _ := strconv.Atoi(m[1])
				select {
				case local <- n:
				default:
				}
			}
		}
	}()
	select {
	case n := <-local:
		return &criPortForward{local: n, stderr: stderr, stop: stop}
	case <-time.After(30 * time.Second):
		t.Fatalf("crictl port-forward %s :%d printed no local port within 30s; stderr: %s", p.id, port, stderr)
	}
	return nil
}

// testCRIPortForward: `crictl port-forward` (the CRI's PortForward) of a
// pod run by the initos handler carries a request to the pod's server and
// its reply back, bulk data both ways, and a port nobody listens on in the
// pod ends the client's connection with an error instead of a hang.
// Issue 16, "Port forward".
func testCRIPortForward(t *testing.T, c *containerd) {
	pod := c.runPod(t, "ictd-pf", initosHandler)
	c.startContainer(t, pod, "web", "sh", "-c", "mkdir -p /www && echo pf-hello-from-the-vm > /www/index.html && exec httpd -f -p 8080 -h /www")
	c.startContainer(t, pod, "echo", "nc", "-ll", "-p", "9000", "-e", "cat")

	// HTTP: the request goes into the VM, the reply comes out.
	web := c.portForward(t, pod, 8080)
	var body string
	poll(t, settleTimeout, "a reply through crictl port-forward", func() (bool, string) {
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", web.local))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if body != "pf-hello-from-the-vm\n" {
		t.Errorf("port-forwarded reply %q, want the pod's index.html", body)
	}

	// Bulk, both ways at once: 256 KiB echoed by the pod's nc.
	echo := c.portForward(t, pod, 9000)
	data := make([]byte, 256<<10)
	rand.Read(data)
	var got []byte
	poll(t, settleTimeout, "an echo through crictl port-forward", func() (bool, string) {
		conn, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", echo.local), 10*time.Second)
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		werr := make(chan error, 1)
		go func() {
			_, err := conn.Write(data)
			werr <- err
		}()
		got = make([]byte, len(data))
		n, err := io.ReadFull(conn, got)
		if err != nil {
			return false, fmt.Sprintf("read %d of %d bytes: %v", n, len(data), err)
		}
		if err := <-werr; err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if !bytes.Equal(got, data) {
		t.Errorf("the echo differs from what was sent (%d bytes)", len(data))
	}

	// A port nobody listens on in the pod: the client's connection ends
	// (the shim resets the one containerd made), with an error in
	// crictl's output, well before any timeout.
	closed := c.portForward(t, pod, 9999)
	conn, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", closed.local), 10*time.Second)
	if err != nil {
		t.Fatalf("dialing crictl's local port: %v", err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	t0 := time.Now()
	conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	b, err := io.ReadAll(conn)
	conn.Close()
	if took := time.Since(t0); took > 30*time.Second || len(b) > 0 {
		t.Errorf("a port without listener: read %q, %v after %s; want the connection ended at once, nothing read", b, err, took.Round(time.Millisecond))
	}
	poll(t, 30*time.Second, "crictl's error for the port without listener", func() (bool, string) {
		s := closed.stderr.String()
		return strings.Contains(s, "9999") && strings.Contains(strings.ToLower(s), "error"), s
	})

	for _, f := range []*criPortForward{web, echo, closed} {
		f.stop()
	}
	c.ok(t, "crictl", "stopp", pod.id)
	c.ok(t, "crictl", "rmp", pod.id)
	c.assertGone(t, pod.id)
}
