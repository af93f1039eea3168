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
