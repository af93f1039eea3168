package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Transports of docs/contracts.md.
const (
	VirtioPortName = "org.initos.agent"
	VsockPort      = 1024
)

// findVirtioPort looks for the virtio-serial port called name under sysDir
// (/sys/class/virtio-ports) and returns its device node in devDir.
func findVirtioPort(sysDir, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errorf(ErrNotFound, "no virtio-serial ports (%s is missing)", sysDir)
		}
		return "", err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name, or one going away
		}
		if strings.TrimSpace(string(data)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", errorf(ErrNotFound, "no virtio-serial port named %q", name)
}

// waitVirtioPort waits up to wait for the port and its device node: the
// port appears when the host announces it, after virtio_console loaded.
func waitVirtioPort(ctx context.Context, sysDir, devDir, name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		dev, err := findVirtioPort(sysDir, devDir, name)
		if err == nil {
			if _, err = os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("waiting %v for the virtio-serial port: %w", wait, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// openVirtioPort opens a virtio-serial port and waits until the host side
// is connected: until then reads end at once with EOF, and ttrpc would see
// a connection that ends as it starts.
func openVirtioPort(ctx context.Context, dev string) (streamDevice, error) {
	var f *os.File
	for {
		var err error
		f, err = os.OpenFile(dev, os.O_RDWR|unix.O_NOCTTY, 0)
		if err == nil {
			break
		}
		// EBUSY: the previous connection's descriptor is still closing.
		if !errors.Is(err, unix.EBUSY) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The kernel signals the port's owner (SIGIO) when the host opens or
	// closes its side (virtio_console's send_sigio_to_port), so a clone's
	// host connection is seen at once rather than at the next poll.
	wake, stop := portEvents(f)
	defer stop()
	if err := waitHostConnected(ctx, func() (bool, error) { return hostConnected(f) }, wake, connectRepoll); err != nil {
		f.Close()
		return nil, fmt.Errorf("waiting for the host on %q: %w", dev, err)
	}
	return f, nil
}

// connectRepoll bounds the wait for a host connection between checks, in
// case the port's SIGIO never comes.
const connectRepoll = 50 * time.Millisecond

// waitHostConnected returns once connected says so: it checks again on
// each wake and at least every repoll.
func waitHostConnected(ctx context.Context, connected func() (bool, error), wake <-chan os.Signal, repoll time.Duration) error {
	t := time.NewTimer(repoll)
	defer t.Stop()
	for {
		ok, err := connected()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Reset(repoll)
	}
}

// portEvents asks for SIGIO when f's host side connects or disconnects
// (fcntl F_SETOWN and O_ASYNC) and returns the channel that receives it.
// stop clears O_ASYNC, so that data on a connected port raises no signal,
// and stops the channel. Without the signal the channel stays quiet.
func portEvents(f *os.File) (wake <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGIO)
	rc, err := f.SyscallConn()
	if err != nil {
		return ch, func() { signal.Stop(ch) }
	}
	setAsync := func(on bool) {
		_ = rc.Control(func(fd uintptr) {
			if on {
				if _, err := unix.FcntlInt(fd, unix.F_SETOWN, os.Getpid()); err != nil {
					return
				}
			}
			fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
			if err != nil {
				return
			}
			if on {
				fl |= unix.O_ASYNC
			} else {
				fl &^= unix.O_ASYNC
			}
			_, _ = unix.FcntlInt(fd, unix.F_SETFL, fl)
		})
	}
	setAsync(true)
	return ch, func() {
		setAsync(false)
		signal.Stop(ch)
	}
}

// hostConnected polls a virtio-serial port: POLLHUP means that the host side
// is not connected.
func hostConnected(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var revents int16
	var pollErr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, pollErr = unix.Poll(fds, 0)
			if !errors.Is(pollErr, unix.EINTR) {
				break
			}
		}
		revents = fds[0].Revents
	}); err != nil {
		return false, err
	}
	if pollErr != nil {
		return false, pollErr
	}
	return revents&unix.POLLHUP == 0, nil
}

// socketListener is a net.Listener over a listening socket of a family the
// net package does not know (AF_VSOCK): net.FileListener rejects those.
type socketListener struct {
	f    *os.File
	addr deviceAddr
}

// newSocketListener wraps a listening, non-blocking socket fd.
func newSocketListener(fd int, addr deviceAddr) (*socketListener, error) {
	f := os.NewFile(uintptr(fd), addr.String())
	if f == nil {
		return nil, fmt.Errorf("wrapping socket fd %d", fd)
	}
	return &socketListener{f: f, addr: addr}, nil
}

// listenVsock listens on AF_VSOCK port for any CID.
func listenVsock(port uint32) (*socketListener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding vsock port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listening on vsock port %d: %w", port, err)
	}
	return newSocketListener(fd, deviceAddr{"vsock", fmt.Sprintf("vsock:%d", port)})
}

// Accept waits (in the runtime's poller) for a connection.
func (l *socketListener) Accept() (net.Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var acceptErr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, acceptErr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		return !errors.Is(acceptErr, unix.EAGAIN)
	})
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil, net.ErrClosed
		}
		return nil, err
	}
	if acceptErr != nil {
		if errors.Is(acceptErr, unix.ECONNABORTED) || errors.Is(acceptErr, unix.EINTR) {
			return nil, &temporaryError{acceptErr}
		}
		return nil, fmt.Errorf("accept on %s: %w", l.addr, acceptErr)
	}
	conn := os.NewFile(uintptr(nfd), l.addr.String())
	return &deviceConn{dev: conn, addr: l.addr, closed: make(chan struct{})}, nil
}

func (l *socketListener) Close() error   { return l.f.Close() }
func (l *socketListener) Addr() net.Addr { return l.addr }
