package runtime

import (
	"errors"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestWithInheritedRlimits(t *testing.T) {
	host := map[int]unix.Rlimit{
		unix.RLIMIT_NOFILE:  {Cur: 1 << 30, Max: 1 << 30}, // systemd's infinity for services
		unix.RLIMIT_NPROC:   {Cur: 96364, Max: 96364},
		unix.RLIMIT_MEMLOCK: {Cur: 8 << 20, Max: 8 << 20},
	}
	orig := getrlimit
	getrlimit = func(res int, lim *unix.Rlimit) error {
		l, ok := host[res]
		if !ok {
			return errors.New("not in the test's table")
		}
		*lim = l
		return nil
	}
	t.Cleanup(func() { getrlimit = orig })

	spec := &specs.Process{Args: []string{"sh"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NPROC", Soft: 300, Hard: 400}}}
	got := withInheritedRlimits(spec)
	want := []specs.POSIXRlimit{
		{Type: "RLIMIT_NPROC", Soft: 300, Hard: 400}, // the spec's own wins
		{Type: "RLIMIT_MEMLOCK", Soft: 8 << 20, Hard: 8 << 20},
		{Type: "RLIMIT_NOFILE", Soft: guestNrOpen, Hard: guestNrOpen}, // capped to the guest's nr_open
	}
	if !reflect.DeepEqual(got.Rlimits, want) {
		t.Errorf("rlimits %+v, want %+v", got.Rlimits, want)
	}
	if len(spec.Rlimits) != 1 || got.Args[0] != "sh" {
		t.Errorf("the spec's process was changed (%+v) or not copied (%+v)", spec.Rlimits, got)
	}
	if withInheritedRlimits(nil) != nil {
		t.Error("a nil process gained limits")
	}
}
