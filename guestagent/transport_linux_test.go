package guestagent

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

func TestFindVirtioPort(t *testing.T) {
	sys := t.TempDir()
	for name, port := range map[string]string{"vport0p0": "", "vport1p1": "org.qemu.guest_agent.0", "vport1p2": "org.initos.agent\n"} {
		dir := filepath.Join(sys, name)
		os.MkdirAll(dir, 0o755)
		if port != "" {
			os.WriteFile(filepath.Join(dir, "name"), []byte(port), 0o644)
		}
	}
	got, err := findVirtioPort(sys, "/dev", VirtioPortName)
	if err != nil || got != "/dev/vport1p2" {
		t.Errorf("findVirtioPort = %q, %v; want /dev/vport1p2", got, err)
	}
	if _, err := findVirtioPort(sys, "/dev", "org.other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing port: %v", err)
	}
	if _, err := findVirtioPort(filepath.Join(sys, "absent"), "/dev", VirtioPortName); !errors.Is(err, ErrNotFound) {
		t.Errorf("no virtio-ports class: %v", err)
	}
	// waitVirtioPort wants the device node as well, within its deadline.
	start := time.Now()
	if _, err := waitVirtioPort(context.Background(), sys, t.TempDir(), VirtioPortName, 30*time.Millisecond); err == nil {
		t.Error("waitVirtioPort succeeded without a device node")
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("waitVirtioPort took %v for a 30ms deadline", time.Since(start))
	}
	devDir := t.TempDir()
	os.WriteFile(filepath.Join(devDir, "vport1p2"), nil, 0o600)
	if got, err := waitVirtioPort(context.Background(), sys, devDir, VirtioPortName, time.Second); err != nil || got != filepath.Join(devDir, "vport1p2") {
		t.Errorf("waitVirtioPort = %q, %v", got, err)
	}
}

// TestSocketListener serves ttrpc through socketListener over an AF_UNIX
// socket: the same code path as AF_VSOCK, which this host cannot create.
func TestSocketListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 4); err != nil {
		t.Fatal(err)
	}
	l, err := newSocketListener(fd, deviceAddr{"unix", path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentapi.RegisterAgentService(srv, &pingOnly{version: "sock"})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()

	for i := 0; i < 2; i++ { // two connections in a row
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		client := ttrpc.NewClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := agentapi.NewAgentClient(client).Ping(ctx, &agentapi.PingRequest{})
		cancel()
		client.Close()
		if err != nil || resp.AgentVersion != "sock" {
			t.Fatalf("Ping %d = %v, %v", i, resp, err)
		}
	}
	srv.Close()
	select {
	case err := <-served:
		if err != nil && !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

func TestWaitHostConnected(t *testing.T) {
	errPoll := errors.New("poll failed")
	tests := []struct {
		name string
		// answers are connected's replies, one per check; past the end it
		// says connected.
		answers []error
		wakes   int
		repoll  time.Duration
		cancel  bool
		want    error
		checks  int
	}{
		// Each wake is a check: three signals bring the fourth check
		// long before the hour's repoll.
		{name: "woken", answers: []error{nil, nil, nil}, wakes: 3, repoll: time.Hour, checks: 4},
		{name: "repolled", answers: []error{nil, nil}, repoll: time.Millisecond, checks: 3},
		{name: "already", repoll: time.Hour, checks: 1},
		{name: "poll error", answers: []error{nil, errPoll}, wakes: 1, repoll: time.Hour, want: errPoll, checks: 2},
		{name: "cancelled", answers: []error{nil}, repoll: time.Hour, cancel: true, want: context.Canceled, checks: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			wake := make(chan os.Signal, 1)
			checks := 0
			connected := func() (bool, error) {
				checks++
				if checks > len(tt.answers) {
					return true, nil
				}
				if err := tt.answers[checks-1]; err != nil {
					return false, err
				}
				if checks <= tt.wakes {
					wake <- unix.SIGIO
				}
				return false, nil
			}
			done := make(chan error, 1)
			go func() { done <- waitHostConnected(ctx, connected, wake, tt.repoll) }()
			select {
			case err := <-done:
				if !errors.Is(err, tt.want) {
					t.Errorf("waitHostConnected = %v, want %v", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("waitHostConnected did not return in 10s")
			}
			if checks != tt.checks {
				t.Errorf("%d checks, want %d", checks, tt.checks)
			}
		})
	}
}

// TestPortEvents checks the SIGIO plumbing on a pipe, which signals its
// owner when data arrives as a virtio-serial port does when the host
// connects.
func TestPortEvents(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	wake, stop := portEvents(r)
	if _, err := w.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGIO in 10s after a write")
	}
	stop()
	fl, err := unix.FcntlInt(r.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_ASYNC != 0 {
		t.Error("O_ASYNC is still set after stop")
	}
}
