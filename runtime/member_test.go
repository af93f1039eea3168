package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// withNetns is a spec whose network namespace is path.
func withNetns(path string) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: path}}}}
}

func TestPodSandbox(t *testing.T) {
	c := Config{Root: t.TempDir()}
	self := os.Getpid()
	start, err := processStartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	save := func(st *State) {
		t.Helper()
		dir := filepath.Join(c.Root, st.ID)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := saveState(dir, st); err != nil {
			t.Fatal(err)
		}
	}
	// infra: a live monitor (this process); gone: a stopped one with
	// another pid.
	save(&State{ID: "infra", Status: StatusRunning, MonitorPid: self, MonitorStart: start})
	save(&State{ID: "gone", Status: StatusStopped, MonitorPid: 999999})
	procNet := "/proc/" + strconv.Itoa(self) + "/ns/net"
	tests := []struct {
		name string
		spec *specs.Spec
		want string
	}{
		{"no linux section", &specs.Spec{}, ""},
		{"a new namespace", withNetns(""), ""},
		{"an engine's namespace", withNetns("/run/netns/netns-1"), ""},
		{"another process's namespace", withNetns("/proc/999998/ns/net"), ""},
		{"a stopped container's pid", withNetns("/proc/999999/ns/net"), ""},
		{"a thread's namespace path is not a container's", withNetns("/proc/" + strconv.Itoa(self) + "/task/1/ns/net"), ""},
		{"our container's pid", withNetns(procNet), "infra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := podSandbox(c, tt.spec)
			if err != nil || got != tt.want {
				t.Errorf("podSandbox = %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	// A member's pid leads to its sandbox (--network container:MEMBER).
	save(&State{ID: "infra", Status: StatusRunning, MonitorPid: 999997})
	save(&State{ID: "member", Status: StatusRunning, MonitorPid: self, MonitorStart: start, Sandbox: "infra"})
	if got, err := podSandbox(c, withNetns(procNet)); err != nil || got != "infra" {
		t.Errorf("podSandbox of a member's pid = %q, %v; want its sandbox", got, err)
	}
	// One still being created cannot take members yet.
	os.RemoveAll(filepath.Join(c.Root, "member"))
	dir := filepath.Join(c.Root, "creating")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeMonitorPid(dir, self); err != nil {
		t.Fatal(err)
	}
	if _, err := podSandbox(c, withNetns(procNet)); !errors.Is(err, ErrWrongState) {
		t.Errorf("podSandbox of a container being created: %v, want ErrWrongState", err)
	}
}

func TestMountTrees(t *testing.T) {
	open := func() *os.File {
		f, err := os.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if _, err := newMountTrees([]treeRef{{Path: "/a"}}, nil); err == nil {
		t.Error("a request naming more trees than it carries was taken")
	}
	extra := open()
	if _, err := newMountTrees(nil, []*os.File{extra}); err == nil {
		t.Error("a request carrying more trees than it names was taken")
	}
	if err := extra.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the extra descriptor of a refused request was left open (close: %v)", err)
	}

	a1, a2, ar := open(), open(), open()
	tr, err := newMountTrees([]treeRef{{Path: "/a"}, {Path: "/a"}, {Path: "/a", Recursive: true}}, []*os.File{a1, a2, ar})
	if err != nil {
		t.Fatal(err)
	}
	if tr.peek("/b", false) != nil || tr.take("/b", false) != nil {
		t.Error("a tree of a path that was not sent")
	}
	if tr.peek("/a", true) != ar || tr.take("/a", true) != ar || tr.take("/a", true) != nil {
		t.Error("the recursive tree of /a is not taken once")
	}
	// Two binds of one source: each gets a tree of its own, in order.
	if tr.take("/a", false) != a1 || tr.peek("/a", false) != a2 {
		t.Error("the trees of /a are not taken in order")
	}
	tr.close()
	if err := a2.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("close left a tree open (close: %v)", err)
	}
	if err := a1.Close(); err != nil {
		t.Errorf("close closed a tree that was taken: %v", err)
	}
	ar.Close()
	var none mountTrees
	if none.peek("/a", false) != nil || none.take("/a", false) != nil {
		t.Error("a nil mountTrees holds a tree")
	}
}

func TestStatSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := mountTrees{{Path: file}: {f}}
	defer tr.close()
	// The tree's, not the path's as this namespace sees it.
	if fi, err := statSource(tr, file, false); err != nil || !fi.IsDir() {
		t.Errorf("statSource with a tree: %v, %v; want the tree's directory", fi, err)
	}
	if fi, err := statSource(tr, file, true); err != nil || fi.IsDir() {
		t.Errorf("statSource without a tree of that kind: %v, %v; want the file", fi, err)
	}
}
