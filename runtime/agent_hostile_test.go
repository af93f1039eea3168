package runtime

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
)

// bootWeb boots container "web" of a default bundle on fake host h and
// creates its process.
func bootWeb(t *testing.T, h *fakeHost, c Config) (*Instance, *bundle.Bundle, *Process) {
	t.Helper()
	b := loadBundle(t, nil)
	inst, err := boot(context.Background(), c, b, "web", mkStateDir(t, c, "web"), false, h.deps())
	if err != nil {
		t.Fatal(err)
	}
	p, err := inst.CreateProcess(context.Background(), "web", b.Spec.Process)
	if err != nil {
		t.Fatal(err)
	}
	return inst, b, p
}

// TestStuckAgent: an agent that stops answering (its calls never return,
// whatever their deadline) holds no host call past its deadline: each ends
// with an error that names the operation, the container, the deadline and
// the console's last lines; and Shutdown (what delete does) still stops the
// VM and leaves nothing.
func TestStuckAgent(t *testing.T) {
	orig := callTimeout
	callTimeout = 300 * time.Millisecond
	t.Cleanup(func() { callTimeout = orig })

	h := newFakeHost(t)
	h.vmScript.console = []string{"fake guest console"}
	c := testConfig(t)
	ctx := context.Background()
	inst, b, p := bootWeb(t, h, c)
	h.agent.stuck.Store(true)

	for _, tc := range []struct {
		name string // words the error must hold
		call func() error
	}{
		{"creating process", func() error { _, err := inst.CreateProcess(ctx, "exec-1", b.Spec.Process); return err }},
		{"starting process", func() error { return p.Start(ctx) }},
		{"signalling process", func() error { return p.Signal(ctx, 15, false) }},
		{"resizing the terminal", func() error { return p.Resize(ctx, 80, 24) }},
		{"listing the processes", func() error { _, err := inst.Processes(ctx); return err }},
		{"stats", func() error { _, err := inst.GuestStats(ctx); return err }},
		{"limits", func() error { return inst.UpdateLimits(ctx, &agentapi.CgroupLimits{Pids: 10}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.call()
			if took := time.Since(start); took > 5*callTimeout {
				t.Errorf("took %v with a call deadline of %v", took, callTimeout)
			}
			if err == nil {
				t.Fatal("a stuck agent's call succeeded")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.name) || !strings.Contains(msg, `"web"`) || !strings.Contains(msg, "did not answer within") ||
				!strings.Contains(msg, "last console output:\nfake guest console") {
				t.Errorf("error %q: want it to name the operation (%q), the container, the deadline and the console's tail", msg, tc.name)
			}
		})
	}

	start := time.Now()
	if err := inst.Shutdown(ctx, time.Second); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Shutdown took %v with a stuck agent", took)
	}
	h.assertNothingLeft(c)
}

// heapSampler is a writer that counts what it is given and samples the
// heap every so often.
type heapSampler struct {
	n, writes int64
	maxHeap   uint64
}

func (h *heapSampler) Write(b []byte) (int, error) {
	h.n += int64(len(b))
	if h.writes++; h.writes%16 == 0 {
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		h.maxHeap = max(h.maxHeap, ms.HeapAlloc)
	}
	return len(b), nil
}

// TestOutputFloodBounded: a guest that floods its output keeps the host's
// memory bounded: output is streamed in reads of at most MaxReadBytes,
// never gathered (here 256 MiB pass through with the heap, which also holds
// the fake agent's side, staying far below that).
func TestOutputFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	h := newFakeHost(t)
	chunk := make([]byte, 1<<20)
	for range 256 {
		h.agent.proc.stdout = append(h.agent.proc.stdout, chunk)
	}
	c := testConfig(t)
	ctx := context.Background()
	inst, _, p := bootWeb(t, h, c)
	defer inst.Shutdown(ctx, time.Second)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var out heapSampler
	if err := p.Pump(ctx, Stdio{Stdout: &out}, nil); err != nil {
		t.Fatal(err)
	}
	if out.n != 256<<20 {
		t.Errorf("pumped %d bytes, want %d", out.n, 256<<20)
	}
	if out.maxHeap > 96<<20 {
		t.Errorf("heap reached %d MiB while 256 MiB of output passed", out.maxHeap>>20)
	}
	t.Logf("256 MiB of output, heap at most %d MiB", out.maxHeap>>20)
}

// malformedAgent answers every ttrpc request on conn with a response whose
// payload is not the method's message (as a broken or hostile agent could).
func malformedAgent(conn net.Conn, payload []byte) {
	defer conn.Close()
	hdr := make([]byte, 10)
	for {
		if _, err := io.ReadFull(conn, hdr); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, conn, int64(binary.BigEndian.Uint32(hdr[:4]))); err != nil {
			return
		}
		b, err := proto.Marshal(&ttrpc.Response{Payload: payload})
		if err != nil {
			return
		}
		out := make([]byte, 10, 10+len(b))
		binary.BigEndian.PutUint32(out[:4], uint32(len(b)))
		copy(out[4:8], hdr[4:8]) // the request's stream
		out[8] = 2               // a response
		if _, err := conn.Write(append(out, b...)); err != nil {
			return
		}
	}
}

// TestMalformedAgentReplies: replies that do not decode as their method's
// message are errors naming the call, not panics or hangs.
func TestMalformedAgentReplies(t *testing.T) {
	for name, payload := range map[string][]byte{
		"truncated varint": {0x08, 0xff, 0xff},
		"bad wire type":    {0x0f, 0x01},
		"length past end":  {0x0a, 0x7f, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			host, guest := net.Pipe()
			go malformedAgent(guest, payload)
			inst := &Instance{ID: "web", exited: make(chan struct{})}
			inst.client = newAgentClient(host)
			defer inst.client.Close()
			inst.Agent = agentapi.NewAgentClient(inst.client)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := inst.Processes(ctx); err == nil || !strings.Contains(err.Error(), `listing the processes of container "web"`) {
				t.Errorf("Processes = %v, want an error naming the call", err)
			}
			if _, err := inst.GuestStats(ctx); err == nil {
				t.Error("GuestStats of a malformed reply succeeded")
			}
		})
	}
}
