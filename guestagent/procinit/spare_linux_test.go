package procinit

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSpareRights: a spare takes exactly the helper's six descriptors.
func TestSpareRights(t *testing.T) {
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{HandoffFiles, 2} {
		fds := make([]int, n)
		for i := range fds {
			fds[i] = int(f.Fd())
		}
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Sendmsg(pair[0], []byte{1}, unix.UnixRights(fds...), nil, 0); err != nil {
			t.Fatal(err)
		}
		oob := make([]byte, unix.CmsgSpace(HandoffFiles*4))
		_, oobn, _, _, err := unix.Recvmsg(pair[1], make([]byte, 1), oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		got, err := spareRights(oob[:oobn])
		switch {
		case n == HandoffFiles && (err != nil || len(got) != n):
			t.Errorf("%d descriptors: %v, %v", n, got, err)
		case n != HandoffFiles && (err == nil || !strings.Contains(err.Error(), "received 2 descriptors, want 6")):
			t.Errorf("%d descriptors: err %v", n, err)
		}
		for _, fd := range got {
			unix.Close(fd)
		}
		unix.Close(pair[0])
		unix.Close(pair[1])
	}
}
