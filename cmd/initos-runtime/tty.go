package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// hostTerminal is the caller's terminal when run's process has one: it is
// put in raw mode, as runc does, so that keys reach the guest's pty
// unchanged, and its size follows SIGWINCH.
type hostTerminal struct {
	fd    int
	saved *unix.Termios
	winch chan os.Signal
}

// openHostTerminal returns nil when stdin is not a terminal; the process's
// pty is then bridged over plain pipes.
func openHostTerminal() (*hostTerminal, error) {
	fd := int(os.Stdin.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return nil, nil // not a terminal
	}
	saved, err := runtime.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	return &hostTerminal{fd: fd, saved: saved}, nil
}

// hostTerminalFunc is runtime.RunOptions.Terminal for the CLI's stdin.
func hostTerminalFunc() (<-chan runtime.WindowSize, func(), error) {
	t, err := openHostTerminal()
	if err != nil || t == nil {
		return nil, nil, err
	}
	return t.sizes(), t.restore, nil
}

// sizes sends the current size, then one per SIGWINCH.
func (t *hostTerminal) sizes() <-chan runtime.WindowSize {
	out := make(chan runtime.WindowSize, 4)
	t.winch = make(chan os.Signal, 4)
	signal.Notify(t.winch, syscall.SIGWINCH)
	send := func() {
		if ws, err := unix.IoctlGetWinsize(t.fd, unix.TIOCGWINSZ); err == nil {
			select {
			case out <- runtime.WindowSize{Width: uint32(ws.Col), Height: uint32(ws.Row)}:
			default:
			}
		}
	}
	send()
	go func() {
		for range t.winch {
			send()
		}
	}()
	return out
}

// restore puts the terminal back as it was.
func (t *hostTerminal) restore() {
	if t.winch != nil {
		signal.Stop(t.winch)
	}
	_ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.saved)
}
