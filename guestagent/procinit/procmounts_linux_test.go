package procinit

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// fakeTree records the mount API calls; cloneFails and moveFails name a
// path whose call fails.
type fakeTree struct {
	calls                 []string
	next                  int
	open                  map[int]bool
	cloneFails, moveFails string
}

func (f *fakeTree) ops() treeOps {
	f.open, f.next = map[int]bool{}, 10
	return treeOps{
		clone: func(p string) (int, error) {
			if p == f.cloneFails {
				return -1, errors.New("EINVAL")
			}
			f.next++
			f.open[f.next] = true
			f.calls = append(f.calls, fmt.Sprintf("clone %s = %d", p, f.next))
			return f.next, nil
		},
		move: func(fd int, target string) error {
			f.calls = append(f.calls, fmt.Sprintf("move %d %s", fd, target))
			if target == f.moveFails {
				return errors.New("ENOENT")
			}
			return nil
		},
		close: func(fd int) error { delete(f.open, fd); return nil },
	}
}

func TestKeepProcMounts(t *testing.T) {
	paths := []string{"/r/proc/meminfo", "/r/proc/sys/fs", "/r/proc/sys/fs/binfmt_misc", "/r/proc/meminfo", "/r/proc/sysx"}
	tests := []struct {
		name                  string
		cloneFails, moveFails string
		want                  []string
		wantErr               bool
	}{
		{"all", "", "", []string{"clone /r/proc/meminfo = 11", "clone /r/proc/sys/fs = 12", "clone /r/proc/sysx = 13",
			"move 11 /r/proc/meminfo", "move 12 /r/proc/sys/fs", "move 13 /r/proc/sysx"}, false},
		{"a clone fails", "/r/proc/sys/fs", "", []string{"clone /r/proc/meminfo = 11"}, true},
		{"a move fails", "", "/r/proc/sys/fs", []string{"clone /r/proc/meminfo = 11", "clone /r/proc/sys/fs = 12", "clone /r/proc/sysx = 13",
			"move 11 /r/proc/meminfo", "move 12 /r/proc/sys/fs"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTree{cloneFails: tt.cloneFails, moveFails: tt.moveFails}
			ops := f.ops()
			kept, err := keepMounts(ops, paths)
			if err == nil {
				err = restoreMounts(ops, kept)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(f.calls, tt.want) {
				t.Errorf("calls %q, want %q", f.calls, tt.want)
			}
			if len(f.open) != 0 {
				t.Errorf("descriptors left open: %v", f.open)
			}
		})
	}
	if kept, err := keepMounts((&fakeTree{}).ops(), nil); err != nil || kept != nil {
		t.Errorf("no mounts: %v, %v", kept, err)
	}
}
