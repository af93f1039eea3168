package runtime

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestHostOOM: the VM's processes get its own value, then the lowest of
// its members' once one has a value, and their own again when the last
// leaves; nothing is written when the value does not change, and a
// refused write leaves the member uncounted.
func TestHostOOM(t *testing.T) {
	type op struct {
		join  bool
		id    string
		adj   *int
		fail  bool // the write is refused
		wantE string
	}
	for _, tc := range []struct {
		name string
		own  *int
		ops  []op
		want []int // the values written, in order
	}{
		{name: "no members", own: intp(-998), want: nil},
		{name: "members lower and raise it", own: intp(-998), ops: []op{
			{join: true, id: "a", adj: intp(700)},
			{join: true, id: "b", adj: intp(300)},
			{join: true, id: "c", adj: intp(500)}, // not the lowest: no write
			{join: true, id: "d"},                 // none: no write
			{id: "b"},
			{id: "d"},
			{id: "a"},
			{id: "c"}, // the last with a value: back to its own
		}, want: []int{700, 300, 500, -998}},
		{name: "same value written once", own: intp(0), ops: []op{
			{join: true, id: "a", adj: intp(0)},
			{join: true, id: "b", adj: intp(1000)},
			{id: "a"},
		}, want: []int{1000}},
		{name: "no own value keeps the last", ops: []op{
			{join: true, id: "a", adj: intp(1000)},
			{id: "a"},
			{id: "unknown"},
		}, want: []int{1000}},
		{name: "refused", own: intp(500), ops: []op{
			{join: true, id: "a", adj: intp(-500), fail: true, wantE: `container "a"'s oomScoreAdj -500: permission denied`},
			{join: true, id: "b", adj: intp(800)},
			{id: "a"}, // never counted: nothing to do
		}, want: []int{800}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostOOM(tc.own)
			var wrote []int
			for _, o := range tc.ops {
				set := func(adj int) error {
					if o.fail {
						return errors.New("permission denied")
					}
					wrote = append(wrote, adj)
					return nil
				}
				var err error
				if o.join {
					err = h.join(o.id, o.adj, set)
				} else {
					err = h.leave(o.id, set)
				}
				if (err != nil) != (o.wantE != "") || (err != nil && !strings.Contains(err.Error(), o.wantE)) {
					t.Errorf("%+v: error %v, want %q", o, err, o.wantE)
				}
			}
			if !reflect.DeepEqual(wrote, tc.want) {
				t.Errorf("wrote %v, want %v", wrote, tc.want)
			}
		})
	}
}
