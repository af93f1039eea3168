package guestagent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	devconfig "github.com/opencontainers/cgroups/devices/config"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// TestDevicePrograms: a preloaded device program is attached, not loaded
// again, to each cgroup with its rules; other rules load a program of
// their own, kept too; a cgroup that has another program gets the new one
// by a load, which replaces it.
func TestDevicePrograms(t *testing.T) {
	mnt := mountCgroup2(t, " and loads BPF programs")
	for _, name := range []string{"a", "b", "c", "d"} {
		dir := filepath.Join(mnt, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(dir) })
	}
	common, err := deviceRules(agentapi.CommonDeviceRules())
	if err != nil {
		t.Fatal(err)
	}
	other := slices.Concat(common, []*devconfig.Rule{{Type: devconfig.CharDevice, Major: 10, Minor: 229, Permissions: "rwm", Allow: true}})
	loads := 0
	d := newDevicePrograms(func(dir string, rules []*devconfig.Rule) error {
		loads++
		return setCgroupDevices(dir, rules)
	})
	t.Cleanup(func() {
		for _, p := range d.progs {
			unix.Close(p.fd)
		}
	})
	if err := d.preload(mnt, common); err != nil {
		t.Fatalf("preload: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "initos-devices")); !os.IsNotExist(err) {
		t.Errorf("the preload's cgroup is left: %v", err)
	}
	kept, ok := d.progs[rulesKey(common)]
	if !ok || loads != 1 {
		t.Fatalf("after preload: %d loads, kept %v; want 1 and the program kept", loads, ok)
	}
	progs := func(name string) []uint32 {
		t.Helper()
		fd, err := unix.Open(filepath.Join(mnt, name), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		ids, err := bpfDeviceProgIDs(fd)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	steps := []struct {
		cgroup    string
		rules     []*devconfig.Rule
		wantLoads int
		wantKept  bool // the cgroup has the preloaded program alone
	}{
		{"a", common, 1, true},
		{"b", common, 1, true},
		{"a", common, 1, true}, // set again: nothing changes
		{"c", other, 2, false},
		{"d", other, 2, false}, // c's program, kept
		{"b", other, 3, false}, // replacing common's
	}
	for i, s := range steps {
		if err := d.set(filepath.Join(mnt, s.cgroup), s.rules); err != nil {
			t.Fatalf("step %d: set %s: %v", i, s.cgroup, err)
		}
		ids := progs(s.cgroup)
		if loads != s.wantLoads || len(ids) != 1 || (ids[0] == kept.id) != s.wantKept {
			t.Errorf("step %d (%s): %d loads, programs %v (kept %d); want %d loads and the kept program: %v",
				i, s.cgroup, loads, ids, kept.id, s.wantLoads, s.wantKept)
		}
	}
	if len(d.progs) != 2 {
		t.Errorf("%d programs kept, want 2 (common's and other's)", len(d.progs))
	}
}
