package runtime

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPortConn(t *testing.T) {
	h := newFakeHost(t)
	c := testConfig(t)
	inst, err := boot(context.Background(), c, loadBundle(t, nil), "pod", mkStateDir(t, c, "pod"), true, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Shutdown(context.Background(), time.Second)
	ctx := context.Background()
	h.agent.ports.refused = 81
	h.agent.ports.replies = [][]byte{[]byte("HTTP/1.0 200 OK\r\n"), []byte("\r\nhi")}

	if _, err := inst.DialPort(ctx, 81); err == nil || !strings.Contains(err.Error(), `connecting to port 81 in the VM of container "pod"`) ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Errorf("DialPort of a refused port: %v", err)
	}
	pc, err := inst.DialPort(ctx, 80)
	if err != nil {
		t.Fatalf("DialPort: %v", err)
	}
	if err := pc.Write(ctx, []byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := pc.CloseWrite(ctx); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	var got strings.Builder
	for {
		b, err := pc.Read(ctx, 0)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		got.Write(b)
	}
	if got.String() != "HTTP/1.0 200 OK\r\n\r\nhi" {
		t.Errorf("read %q", got.String())
	}
	if err := pc.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	p := &h.agent.ports
	h.agent.mu.Lock()
	if string(p.written[1]) != "GET / HTTP/1.0\r\n\r\n" || !p.halfClosed[1] || !p.closed[1] || len(p.dialed) != 1 || p.dialed[0] != 80 {
		t.Errorf("agent saw dialed %v written %q half-closed %v closed %v", p.dialed, p.written[1], p.halfClosed, p.closed)
	}
	// A guest that sends more than asked for is refused.
	p.oversize = true
	h.agent.mu.Unlock()
	if _, err := pc.Read(ctx, 10); err == nil || !strings.Contains(err.Error(), "the agent sent 11 bytes, 10 asked for") {
		t.Errorf("Read of an oversized reply: %v", err)
	}
}
