package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/runtime"
)

// testService is a Service on fake VMs with a config of the test's own.
func testService(t *testing.T) (*Service, *fakePublisher, map[string]*fakeVM) {
	t.Helper()
	dir := t.TempDir()
	cfg := runtime.Config{Root: filepath.Join(dir, "state"), DataDir: filepath.Join(dir, "data")}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ConfigEnv, path)
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), "test"))
	t.Cleanup(cancel)
	pub := &fakePublisher{}
	s, err := NewService(ctx, pub, &fakeShutdown{ch: make(chan struct{})})
	if err != nil {
		t.Fatal(err)
	}
	vms := map[string]*fakeVM{}
	s.boot = func(_ context.Context, _ runtime.Config, _ *bundle.Bundle, id, _ string, _ bool) (sandbox, error) {
		v := newFakeVM()
		vms[id] = v
		return v, nil
	}
	s.startView = func(rootfs string, _ []specs.Mount, _ string) (view, error) {
		return &fakeView{pid: 5151, rootfs: rootfs}, nil
	}
	s.listenPorts = func(ns string) (portListener, error) {
		return nil, fmt.Errorf("no port forward in network namespace %q in this test", ns)
	}
	return s, pub, vms
}

// writeBundle makes a bundle dir with args and annotations.
func writeBundle(t *testing.T, args []string, annotations map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := specs.Spec{
		Version:     specs.Version,
		Root:        &specs.Root{Path: "rootfs"},
		Process:     &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
		Annotations: annotations,
		Linux:       &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}}},
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func waitTopics(t *testing.T, pub *fakePublisher, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := pub.seen()
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events\n got %v\nwant %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func vmOf(t *testing.T, vms map[string]*fakeVM, id string) *fakeVM {
	t.Helper()
	v := vms[stateDirName("test", id)]
	if v == nil {
		t.Fatalf("no VM for %q", id)
	}
	return v
}

func TestTaskLifecycleEvents(t *testing.T) {
	s, pub, vms := testService(t)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "log", "out")
	bdir := writeBundle(t, []string{"echo", "hi"}, nil)
	resp, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bdir, Stdout: "file://" + out, Stderr: "file://" + out})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.Pid != 5151 {
		t.Errorf("pid %d, want the view process's 5151", resp.Pid)
	}
	if st, err := s.State(ctx, &taskAPI.StateRequest{ID: "c1"}); err != nil || st.Status != task.Status_CREATED {
		t.Fatalf("State after create = %v, %v", st, err)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// Exec: added, started, exit, before the task's own exit.
	spec, _ := json.Marshal(specs.Process{Args: []string{"true"}, Cwd: "/"})
	if _, err := s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec}}); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if _, err := s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{Value: spec}}); !errdefs.IsAlreadyExists(errgrpc.ToNative(err)) {
		t.Errorf("second exec e1: %v, want AlreadyExists", err)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatalf("Start exec: %v", err)
	}
	vm := vmOf(t, vms, "c1")
	vm.proc("c1.exec.e1").end(4)
	w, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c1", ExecID: "e1"})
	if err != nil || w.ExitStatus != 4 {
		t.Fatalf("Wait exec = %v, %v; want 4", w, err)
	}
	if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Errorf("Delete of a running task: %v, want FailedPrecondition", err)
	}
	vm.proc("c1").end(3)
	w, err = s.Wait(ctx, &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 3 {
		t.Fatalf("Wait = %v, %v; want 3", w, err)
	}
	if _, err := s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", Signal: 9}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("Kill after exit: %v, want NotFound (containerd's \"process already finished\")", err)
	}
	d, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"})
	if err != nil || d.ExitStatus != 3 {
		t.Fatalf("Delete = %v, %v", d, err)
	}
	// containerd's contract: once Delete has returned, the process's io is
	// finished, so the log is read before anything else can wait.
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "echo\nhi\n" {
		t.Errorf("file:// log after Delete = %q, %v", b, err)
	}
	waitTopics(t, pub, []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/exit", "/tasks/delete"})
	if !vm.shutdown {
		t.Error("the VM was not shut down by delete")
	}
	if _, err := s.State(ctx, &taskAPI.StateRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("State after delete: %v, want NotFound", err)
	}
	if _, err := os.Stat(filepath.Join(bdir, recordFile)); !os.IsNotExist(err) {
		t.Errorf("the shim record is left after delete: %v", err)
	}
}

func TestInitExitEndsExecsFirst(t *testing.T) {
	s, pub, vms := testService(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: writeBundle(t, []string{"sleep"}, nil)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(specs.Process{Args: []string{"sleep"}, Cwd: "/"})
	if _, err := s.Exec(ctx, &taskAPI.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{Value: spec}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	vmOf(t, vms, "c1").proc("c1").end(0)
	waitTopics(t, pub, []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit", "/tasks/exit"})
	pub.mu.Lock()
	last := pub.events[len(pub.events)-1]
	pub.mu.Unlock()
	if !strings.Contains(last.(interface{ String() string }).String(), `id:"c1"`) {
		t.Errorf("the last exit is %v, want the init's (after its exec's)", last)
	}
}

func TestCreateErrors(t *testing.T) {
	s, _, _ := testService(t)
	ctx := context.Background()
	tests := []struct {
		name string
		req  *taskAPI.CreateTaskRequest
		is   func(error) bool
	}{
		// Not Unimplemented: containerd would take it for "no task API v3"
		// and retry on v2 (toGRPCCreate).
		{"checkpoint", &taskAPI.CreateTaskRequest{ID: "a", Bundle: writeBundle(t, []string{"x"}, nil), Checkpoint: "/cp"}, func(err error) bool {
			return errdefs.IsFailedPrecondition(err) && strings.Contains(err.Error(), "restoring a checkpoint")
		}},
		{"terminal mismatch", &taskAPI.CreateTaskRequest{ID: "b", Bundle: writeBundle(t, []string{"x"}, nil), Terminal: true}, errdefs.IsInvalidArgument},
		{"member without sandbox", &taskAPI.CreateTaskRequest{ID: "c", Bundle: writeBundle(t, []string{"x"},
			map[string]string{annotationContainerType: "container", annotationSandboxID: "nope"})}, errdefs.IsFailedPrecondition},
		{"bad stdout scheme", &taskAPI.CreateTaskRequest{ID: "d", Bundle: writeBundle(t, []string{"x"}, nil), Stdout: "ftp://x"}, func(err error) bool {
			return strings.Contains(err.Error(), `unsupported scheme "ftp"`)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Create(ctx, tc.req)
			if err == nil || !tc.is(errgrpc.ToNative(err)) {
				t.Fatalf("Create = %v", err)
			}
			if _, err := s.State(ctx, &taskAPI.StateRequest{ID: tc.req.ID}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
				t.Errorf("a failed create left task %q: %v", tc.req.ID, err)
			}
			if _, err := os.Stat(filepath.Join(tc.req.Bundle, recordFile)); !os.IsNotExist(err) {
				t.Errorf("a failed create left its record: %v", err)
			}
		})
	}
	if _, err := s.Checkpoint(ctx, &taskAPI.CheckpointTaskRequest{ID: "x"}); !errdefs.IsNotImplemented(errgrpc.ToNative(err)) {
		t.Errorf("Checkpoint = %v, want NotImplemented", err)
	}
}

func TestPodMembersJoinTheSandboxVM(t *testing.T) {
	s, _, vms := testService(t)
	ctx := context.Background()
	sb := map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "pod"}
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "pod", Bundle: writeBundle(t, []string{"pause"}, sb)}); err != nil {
		t.Fatal(err)
	}
	member := map[string]string{annotationContainerType: "container", annotationSandboxID: "pod"}
	for _, id := range []string{"app", "side"} {
		if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: id, Bundle: writeBundle(t, []string{"app"}, member)}); err != nil {
			t.Fatalf("Create %s: %v", id, err)
		}
	}
	if len(vms) != 1 {
		t.Fatalf("%d VMs booted, want the sandbox's only", len(vms))
	}
	if got := vmOf(t, vms, "pod").members; strings.Join(got, ",") != "app,side" {
		t.Errorf("members %v", got)
	}
	if _, err := s.Pause(ctx, &taskAPI.PauseRequest{ID: "pod"}); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if st, _ := s.State(ctx, &taskAPI.StateRequest{ID: "pod"}); st.Status != task.Status_PAUSED {
		t.Errorf("status %v after pause", st.Status)
	}
}

func TestResolveConfigFromOptions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	if err := os.WriteFile(path, []byte(`{"root":"/r","dataDir":"/d","memoryMiB":256}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ConfigEnv, "")
	c, err := resolveConfig(runtimeOptions(path, `{"cpus":2,"vmm":"qemu"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/r" || c.MemoryMiB != 256 || c.CPUs != 2 || c.VMM != "qemu" {
		t.Errorf("config %+v", c)
	}
	if _, err := resolveConfig(runtimeOptions(filepath.Join(dir, "missing.json"), "")); err == nil {
		t.Error("a missing ConfigPath is no error")
	}
	if _, err := resolveConfig(runtimeOptions(path, `{"vmm":"firecracker"}`)); err == nil || !strings.Contains(err.Error(), "firecracker") {
		t.Errorf("bad vmm: %v", err)
	}
}

// runtimeOptions builds options as containerd's CRI passes them.
func runtimeOptions(path, body string) *runtimeoptions.Options {
	return &runtimeoptions.Options{ConfigPath: path, ConfigBody: []byte(body)}
}

func TestStatsFromTheGuest(t *testing.T) {
	s, _, _ := testService(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: writeBundle(t, []string{"x"}, nil)}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Stats(ctx, &taskAPI.StatsRequest{ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(resp.Stats)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(*stats.Metrics)
	if !ok || m.CPU.UsageUsec != 700 || m.Memory.Usage != 3<<20 || m.Pids.Current != 2 ||
		m.MemoryEvents.GetOom() != 3 || m.MemoryEvents.GetOomKill() != 1 {
		t.Errorf("stats %v", v)
	}
}

func TestUpdateWritesGuestLimits(t *testing.T) {
	s, _, vms := testService(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: writeBundle(t, []string{"x"}, nil)}); err != nil {
		t.Fatal(err)
	}
	res := func(js string) *anypb.Any {
		return &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources", Value: []byte(js)}
	}
	if _, err := s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1", Resources: res(`{"pids":{"limit":64}}`)}); err != nil {
		t.Fatal(err)
	}
	if l := vmOf(t, vms, "c1").limits; l == nil || l.Pids != 64 {
		t.Errorf("limits written: %v, want pids 64", l)
	}
	// The default VM has 512 MiB: 1 GiB cannot be given.
	_, err := s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1", Resources: res(`{"memory":{"limit":1073741824}}`)})
	if !errdefs.IsNotImplemented(errgrpc.ToNative(err)) || !strings.Contains(err.Error(), "memory limit above the VM's memory") {
		t.Errorf("Update above the VM's memory: %v", err)
	}
	if _, err := s.Update(ctx, &taskAPI.UpdateTaskRequest{ID: "c1", Resources: res(`{not json`)}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Errorf("Update with bad JSON: %v", err)
	}
}

// TestTaskView: the task's pid is its view process's, which lives until
// the task is deleted; a view that cannot start fails the create and
// leaves no VM.
func TestTaskView(t *testing.T) {
	s, _, vms := testService(t)
	ctx := context.Background()
	var views []*fakeView
	s.startView = func(rootfs string, mounts []specs.Mount, netns string) (view, error) {
		v := &fakeView{pid: uint32(6000 + len(views)), rootfs: rootfs, netns: netns}
		views = append(views, v)
		return v, nil
	}
	bdir := writeBundle(t, []string{"true"}, nil)
	resp, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bdir})
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 1 || resp.Pid != views[0].pid || views[0].rootfs != filepath.Join(bdir, "rootfs") {
		t.Fatalf("pid %d, views %+v: want one view of the bundle's rootfs, its pid the task's", resp.Pid, views)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	vmOf(t, vms, "c1").proc("c1").end(0)
	if _, err := s.Wait(ctx, &taskAPI.WaitRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if !views[0].stopped {
		t.Error("the view process outlived its task")
	}

	s.startView = func(string, []specs.Mount, string) (view, error) {
		return nil, errors.New("view process of \"/b/rootfs\": not ready after 10s")
	}
	_, err = s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c2", Bundle: writeBundle(t, []string{"true"}, nil)})
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("Create with a failing view = %v, want its error", err)
	}
	if v := vmOf(t, vms, "c2"); !v.shutdown {
		t.Error("the VM of a task whose view failed was not shut down")
	}
}

// TestOOMEvent: an exit the guest's OOM killer caused is preceded by
// TaskOOM for the container (containerd's CRI then says OOMKilled).
func TestOOMEvent(t *testing.T) {
	s, pub, vms := testService(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: writeBundle(t, []string{"hog"}, nil)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	p := vmOf(t, vms, "c1").proc("c1")
	p.mu.Lock()
	p.oom = true
	p.mu.Unlock()
	p.end(137)
	waitTopics(t, pub, []string{"/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit"})
	pub.mu.Lock()
	oom := pub.events[2]
	pub.mu.Unlock()
	if !strings.Contains(oom.(interface{ String() string }).String(), `container_id:"c1"`) {
		t.Errorf("TaskOOM %v does not name c1", oom)
	}
}

// TestHostNamespacesRefused: a CRI pod that asks for the node's PID or IPC
// namespace (hostPID, hostIPC: the namespace left out of its spec) is
// refused naming the option; outside the CRI the VM's namespace serves.
func TestHostNamespacesRefused(t *testing.T) {
	withNs := func(types ...specs.LinuxNamespaceType) *specs.Spec {
		s := &specs.Spec{Linux: &specs.Linux{}}
		for _, ty := range types {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: ty})
		}
		return s
	}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		kind string
		want string // "" : accepted
	}{
		{"a pod's own namespaces", withNs(specs.PIDNamespace, specs.IPCNamespace), "sandbox", ""},
		{"hostPID", withNs(specs.IPCNamespace), "sandbox", "hostPID: true"},
		{"hostIPC of a member", withNs(specs.PIDNamespace), "container", "hostIPC: true"},
		{"not a CRI container", withNs(), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := hostNamespaces(tc.spec, tc.kind)
			if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, runtime.ErrUnsupported) || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("hostNamespaces = %v, want %q", err, tc.want)
			}
		})
	}
}
