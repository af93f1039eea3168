package guestagent

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// TestSharedShm: the containers whose /dev/shm names one key share one
// tmpfs, mounted once; another key gets its own; a bad key is refused.
func TestSharedShm(t *testing.T) {
	s, sys, _ := newTestService(t)
	shm := func(key string) *agentapi.Mount {
		return &agentapi.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: sharedShmPrefix + key, Options: []string{"nosuid", "nodev", "size=1024"}}
	}
	for _, root := range []string{"/r/a", "/r/b"} {
		if _, err := s.mountOne(root, "", shm("0a1b")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.mountOne("/r/c", "", shm("ff")); err != nil {
		t.Fatal(err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	want := []string{
		fmt.Sprintf("mount shm /run/initos/shm/0a1b tmpfs %#x size=1024", flags),
		fmt.Sprintf("mount /run/initos/shm/0a1b /r/a/dev/shm  %#x ", unix.MS_BIND),
		fmt.Sprintf("mount /run/initos/shm/0a1b /r/b/dev/shm  %#x ", unix.MS_BIND),
		fmt.Sprintf("mount shm /run/initos/shm/ff tmpfs %#x size=1024", flags),
		fmt.Sprintf("mount /run/initos/shm/ff /r/c/dev/shm  %#x ", unix.MS_BIND),
	}
	if got := sys.Calls("mount"); !reflect.DeepEqual(got, want) {
		t.Errorf("mounts:\n got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"", "../x", "ABC", "0a1b/.."} {
		if _, err := s.mountOne("/r/d", "", shm(bad)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("key %q: %v, want ErrInvalidArgument", bad, err)
		}
	}
}
