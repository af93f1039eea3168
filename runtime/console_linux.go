package runtime

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// openPty opens a host pty pair; the slave is put in raw mode because the
// guest's pty already does echo and line editing: the host one only carries
// bytes and the window size.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("unlocking pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return nil, nil, fmt.Errorf("getting pty number: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", name, err)
	}
	if _, err := MakeRaw(int(slave.Fd())); err != nil {
		slave.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// MakeRaw puts the terminal on fd in raw mode (no echo, no line editing,
// no signals from keys, 8-bit) and returns the modes it had.
func MakeRaw(fd int) (saved *unix.Termios, err error) {
	saved, err = unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("reading terminal modes: %w", err)
	}
	t := *saved
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, fmt.Errorf("setting raw terminal mode: %w", err)
	}
	return saved, nil
}

// sendConsole passes the pty master to the listener on socketPath by
// SCM_RIGHTS, as runc does for --console-socket (conmon, containerd).
func sendConsole(socketPath string, master *os.File) error {
	conn, err := net.Dial("unix", socketPath)
	if err != nil {
		return fmt.Errorf("connecting to console socket %q: %w", socketPath, err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("console socket %q is not a unix socket", socketPath)
	}
	oob := unix.UnixRights(int(master.Fd()))
	if _, _, err := uc.WriteMsgUnix([]byte(master.Name()), oob, nil); err != nil {
		return fmt.Errorf("sending the pty master to %q: %w", socketPath, err)
	}
	return nil
}

// windowSize reads the size of the terminal on fd.
func windowSize(fd int) (WindowSize, error) {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return WindowSize{}, fmt.Errorf("reading window size: %w", err)
	}
	return WindowSize{Width: uint32(ws.Col), Height: uint32(ws.Row)}, nil
}

// takeControllingTerminal makes the pty slave the caller's controlling
// terminal (the caller has its own session), so that a resize of the
// master by conmon raises SIGWINCH here.
func takeControllingTerminal(slave *os.File) error {
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("making the pty the controlling terminal: %w", err)
	}
	return nil
}
