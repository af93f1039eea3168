package procinit

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A spare helper is started before its process is known: a template's
// agent starts one before the template is saved, so that every clone finds
// a helper whose Go runtime is up instead of paying that start under its
// own clock (guestagent/spare_linux.go). It is started with /dev/null as
// 0-2 and a unix socket as SpareFdEnv names; it writes SpareWaiting there,
// then receives its six descriptors (the helper's 0-5) in one message.
const (
	// SpareFdEnv names the spare's socket.
	SpareFdEnv = "INITOS_SPARE_FD"
	// SpareWaiting is the byte a spare writes once it waits.
	SpareWaiting = 'w'
)

// SpareFds are the helper's configuration, start and status descriptors
// when it started as a spare: it says it waits, receives them with the
// process's stdio, and makes those 0-2. ok is false for a helper that was
// not a spare; gone is true when the agent closed the socket instead (the
// spare is not needed: it exits).
func SpareFds() (cfg, start, status int, ok, gone bool, err error) {
	v := os.Getenv(SpareFdEnv)
	if v == "" {
		return 0, 0, 0, false, false, nil
	}
	sock, err := strconv.Atoi(v)
	if err != nil || sock < 3 {
		return 0, 0, 0, false, false, fmt.Errorf("%s=%q: not a descriptor above stdio", SpareFdEnv, v)
	}
	defer unix.Close(sock)
	if _, err := unix.Write(sock, []byte{SpareWaiting}); err != nil {
		return 0, 0, 0, false, false, fmt.Errorf("telling the agent the spare waits: %w", err)
	}
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(HandoffFiles*4))
	var n, oobn int
	for {
		n, oobn, _, _, err = unix.Recvmsg(sock, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, 0, 0, false, false, fmt.Errorf("receiving the spare's descriptors: %w", err)
	}
	if n == 0 {
		return 0, 0, 0, true, true, nil
	}
	fds, err := spareRights(oob[:oobn])
	if err != nil {
		return 0, 0, 0, false, false, err
	}
	if err := takeStdio(fds); err != nil {
		return 0, 0, 0, false, false, err
	}
	return fds[3], fds[4], fds[5], true, false, nil
}

// spareRights parses the descriptors of a spare's message: exactly
// HandoffFiles of them.
func spareRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parsing the spare's descriptors: %w", err)
	}
	var fds []int
	for i := range msgs {
		r, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return nil, fmt.Errorf("parsing the spare's descriptors: %w", err)
		}
		fds = append(fds, r...)
	}
	if len(fds) != HandoffFiles {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("the spare received %d descriptors, want %d", len(fds), HandoffFiles)
	}
	return fds, nil
}
