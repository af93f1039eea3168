package cloudhypervisor

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeAPI serves HTTP on a unix socket, recording "METHOD PATH" of each
// request and answering with status (and body) from respond.
func fakeAPI(t *testing.T, respond func(r *http.Request) (int, string)) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 100)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.Path
		status, body := respond(r)
		w.WriteHeader(status)
		w.Write([]byte(body))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return path, seen
}

func TestAPIClient(t *testing.T) {
	path, seen := fakeAPI(t, func(r *http.Request) (int, string) {
		if r.Method == http.MethodPut && r.ContentLength != 0 {
			return http.StatusBadRequest, "unexpected body"
		}
		if r.URL.Path == "/api/v1/vmm.ping" {
			return http.StatusOK, `{"version":"v48.0"}`
		}
		return http.StatusNoContent, ""
	})
	a := newAPIClient(path)
	ctx := context.Background()
	tests := []struct {
		name string
		call func(context.Context) error
		want string
	}{
		{"ping", a.ping, "GET /api/v1/vmm.ping"},
		{"vm shutdown", a.shutdownVM, "PUT /api/v1/vm.shutdown"},
		{"vmm shutdown", a.shutdownVMM, "PUT /api/v1/vmm.shutdown"},
		{"pause", a.pause, "PUT /api/v1/vm.pause"},
		{"resume", a.resume, "PUT /api/v1/vm.resume"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(ctx); err != nil {
				t.Fatal(err)
			}
			if got := <-seen; got != tt.want {
				t.Errorf("request %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAPIClientErrors(t *testing.T) {
	path, _ := fakeAPI(t, func(r *http.Request) (int, string) {
		return http.StatusInternalServerError, "Error from API: The VM could not be paused: " + strings.Repeat("x", 10000)
	})
	err := newAPIClient(path).pause(context.Background())
	if !errors.Is(err, vmm.ErrVMMRequest) || !strings.Contains(err.Error(), "500 Internal Server Error: Error from API: The VM could not be paused") {
		t.Fatalf("pause = %v", err)
	}
	if len(err.Error()) > maxErrorBody+200 {
		t.Errorf("error message of %d bytes: the body is not bounded", len(err.Error()))
	}

	// No server: a clear dial error, quickly.
	err = newAPIClient(filepath.Join(t.TempDir(), "none.sock")).ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "GET vmm.ping") {
		t.Errorf("ping without server = %v", err)
	}

	// A server that never answers: the ctx deadline ends the request.
	mute := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := newAPIClient(mute).pause(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("pause on a mute server = %v, want deadline exceeded", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %s past a 200ms deadline", d)
	}
}

// TestAPIBodies: each request with a body sends what cloud-hypervisor's
// API schema names, as JSON.
func TestAPIBodies(t *testing.T) {
	bodies := make(chan string, 1)
	path, seen := fakeAPI(t, func(r *http.Request) (int, string) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		if r.Header.Get("Content-Type") != "application/json" {
			return http.StatusBadRequest, "want JSON"
		}
		return http.StatusOK, `{"id":"x","bdf":"0000:00:06.0"}`
	})
	a := newAPIClient(path)
	tests := []struct {
		name string
		call func(context.Context) error
		want string
	}{
		{"snapshot", func(ctx context.Context) error { return a.snapshot(ctx, "/t/state.d") },
			`PUT /api/v1/vm.snapshot {"destination_url":"file:///t/state.d"}`},
		{"add-disk read-only", func(ctx context.Context) error {
			return a.hotplug(ctx, diskConfig{Path: "/d/r.img", ID: "disk1", Serial: "s", Readonly: true})
		}, `PUT /api/v1/vm.add-disk {"path":"/d/r.img","id":"disk1","serial":"s","readonly":true}`},
		{"add-fs", func(ctx context.Context) error {
			return a.hotplug(ctx, fsConfig{Tag: "z", Socket: "/s/virtiofs0.sock", NumQueues: 1, QueueSize: 1024, ID: "fs0"})
		}, `PUT /api/v1/vm.add-fs {"tag":"z","socket":"/s/virtiofs0.sock","num_queues":1,"queue_size":1024,"id":"fs0"}`},
		{"add-net", func(ctx context.Context) error {
			return a.hotplug(ctx, netConfig{Tap: "tap0", MAC: "02:00:00:00:00:02", ID: "net0"})
		}, `PUT /api/v1/vm.add-net {"tap":"tap0","mac":"02:00:00:00:00:02","id":"net0"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := <-seen + " " + <-bodies; got != tt.want {
				t.Errorf("request %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAPIVMState(t *testing.T) {
	tests := []struct {
		name, answer string
		status       int
		want         string
		err          string
	}{
		{"paused", `{"config":{"cpus":{}},"state":"Paused","device_tree":{}}`, http.StatusOK, "Paused", ""},
		{"not created", "Error from API: The VM instance is not created", http.StatusInternalServerError, "", "VM instance is not created"},
		{"not json", "<html>", http.StatusOK, "", "decoding the answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, seen := fakeAPI(t, func(r *http.Request) (int, string) { return tt.status, tt.answer })
			st, err := newAPIClient(path).vmState(context.Background())
			if got := <-seen; got != "GET /api/v1/vm.info" {
				t.Errorf("request %q", got)
			}
			if tt.err == "" && (err != nil || st != tt.want) {
				t.Errorf("vmState = %q, %v; want %q", st, err, tt.want)
			}
			if tt.err != "" && (!errors.Is(err, vmm.ErrVMMRequest) || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("vmState = %q, %v; want ErrVMMRequest containing %q", st, err, tt.err)
			}
		})
	}
}

func TestAPIDiskHotplug(t *testing.T) {
	bodies := make(chan string, 4)
	path, seen := fakeAPI(t, func(r *http.Request) (int, string) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		if r.Header.Get("Content-Type") != "application/json" {
			return http.StatusBadRequest, "want JSON"
		}
		return http.StatusOK, ""
	})
	a := newAPIClient(path)
	ctx := context.Background()
	if err := a.hotplug(ctx, diskConfig{Path: "/d/m.img", ID: "initos-h1", Serial: "initos-h1"}); err != nil {
		t.Fatal(err)
	}
	if got, body := <-seen, <-bodies; got != "PUT /api/v1/vm.add-disk" || body != `{"path":"/d/m.img","id":"initos-h1","serial":"initos-h1"}` {
		t.Errorf("add-disk: %s %s", got, body)
	}
	if err := a.removeDevice(ctx, "initos-h1"); err != nil {
		t.Fatal(err)
	}
	if got, body := <-seen, <-bodies; got != "PUT /api/v1/vm.remove-device" || body != `{"id":"initos-h1"}` {
		t.Errorf("remove-device: %s %s", got, body)
	}
}
