package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeHookExec records the hooks it is asked to run and fails those whose
// path is in fail (exit error text), writing stderr first.
type fakeHookExec struct {
	ran    []string
	stdins [][]byte
	fail   map[string]string
	stderr map[string]string
	block  map[string]bool // wait for ctx to end
}

func (f *fakeHookExec) run(ctx context.Context, h specs.Hook, stdin []byte, stderr io.Writer) error {
	f.ran = append(f.ran, h.Path)
	f.stdins = append(f.stdins, stdin)
	if s, ok := f.stderr[h.Path]; ok {
		io.WriteString(stderr, s)
	}
	if f.block[h.Path] {
		<-ctx.Done()
		return errors.New("signal: killed")
	}
	if msg, ok := f.fail[h.Path]; ok {
		return errors.New(msg)
	}
	return nil
}

func intp(i int) *int { return &i }

func testState() *specs.State {
	return &specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreated, Pid: 42, Bundle: "/b",
		Annotations: map[string]string{"k": "v"}}
}

func TestRunHooksFake(t *testing.T) {
	hooks := func(paths ...string) []specs.Hook {
		out := make([]specs.Hook, len(paths))
		for i, p := range paths {
			out[i] = specs.Hook{Path: p}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		stage   string
		hooks   []specs.Hook
		state   *specs.State
		fake    fakeHookExec
		wantRan []string
		wantErr []string // substrings; nil: no error
	}{
		{name: "none", stage: HookCreateRuntime, state: testState()},
		{name: "in order", stage: HookPrestart, hooks: hooks("/a", "/b", "/c"), state: testState(),
			wantRan: []string{"/a", "/b", "/c"}},
		{name: "first failure stops", stage: HookCreateRuntime, hooks: hooks("/a", "/b", "/c"), state: testState(),
			fake:    fakeHookExec{fail: map[string]string{"/b": "exit status 3"}, stderr: map[string]string{"/b": "no network\n"}},
			wantRan: []string{"/a", "/b"},
			wantErr: []string{"createRuntime hook 1 (/b)", "exit status 3", `stderr: "no network"`}},
		{name: "poststart failure stops", stage: HookPoststart, hooks: hooks("/a", "/b"), state: testState(),
			fake:    fakeHookExec{fail: map[string]string{"/a": "exit status 1"}},
			wantRan: []string{"/a"}, wantErr: []string{"poststart hook 0 (/a)", "exit status 1"}},
		{name: "poststop runs all and joins", stage: HookPoststop, hooks: hooks("/a", "/b", "/c"), state: testState(),
			fake:    fakeHookExec{fail: map[string]string{"/a": "exit status 1", "/c": "exit status 2"}},
			wantRan: []string{"/a", "/b", "/c"},
			wantErr: []string{"poststop hook 0 (/a): exit status 1", "poststop hook 2 (/c): exit status 2"}},
		{name: "relative path refused before any runs", stage: HookCreateContainer,
			hooks: []specs.Hook{{Path: "/a"}, {Path: "bin/hook"}}, state: testState(),
			wantErr: []string{"createContainer hook 1", `"bin/hook" is not absolute`, "MUST be absolute"}},
		{name: "missing path", stage: HookStartContainer, hooks: []specs.Hook{{}}, state: testState(),
			wantErr: []string{"startContainer hook 0: path is missing"}},
		{name: "zero timeout", stage: HookCreateRuntime, hooks: []specs.Hook{{Path: "/a", Timeout: intp(0)}}, state: testState(),
			wantErr: []string{"timeout 0 is not greater than zero"}},
		{name: "negative timeout", stage: HookCreateRuntime, hooks: []specs.Hook{{Path: "/a", Timeout: intp(-5)}}, state: testState(),
			wantErr: []string{"timeout -5 is not greater than zero"}},
		{name: "poststop skips an invalid hook and runs the rest", stage: HookPoststop,
			hooks: []specs.Hook{{Path: "rel"}, {Path: "/b"}}, state: testState(),
			wantRan: []string{"/b"}, wantErr: []string{`poststop hook 0: path "rel" is not absolute`}},
		{name: "unknown stage", stage: "prestop", hooks: hooks("/a"), state: testState(),
			wantErr: []string{`unknown stage "prestop"`}},
		{name: "no state", stage: HookPoststart, hooks: hooks("/a"),
			wantErr: []string{"no container state"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fake
			err := runHooks(context.Background(), f.run, tc.hooks, tc.state, tc.stage)
			if !reflect.DeepEqual(f.ran, tc.wantRan) {
				t.Errorf("ran %v, want %v", f.ran, tc.wantRan)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				for i, in := range f.stdins {
					var got specs.State
					if err := json.Unmarshal(in, &got); err != nil {
						t.Fatalf("stdin of hook %d is not state JSON: %v", i, err)
					}
					if !reflect.DeepEqual(&got, tc.state) {
						t.Errorf("stdin of hook %d: %+v, want %+v", i, got, *tc.state)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRunHooksFakeTimeoutAndCancel(t *testing.T) {
	f := &fakeHookExec{block: map[string]bool{"/slow": true}, stderr: map[string]string{"/slow": "waiting"}}
	start := time.Now()
	err := runHooks(context.Background(), f.run, []specs.Hook{{Path: "/slow", Timeout: intp(1)}, {Path: "/after"}}, testState(), HookCreateRuntime)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v with a 1s timeout", d)
	}
	var he *HookError
	if !errors.As(err, &he) || !he.TimedOut || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want a timed-out *HookError", err)
	}
	for _, w := range []string{"createRuntime hook 0 (/slow)", "timeout of 1s", `stderr: "waiting"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if len(f.ran) != 1 {
		t.Errorf("ran %v after a timeout", f.ran)
	}

	// The caller's cancellation is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f = &fakeHookExec{block: map[string]bool{"/slow": true}}
	err = runHooks(ctx, f.run, []specs.Hook{{Path: "/slow", Timeout: intp(30)}}, testState(), HookPoststart)
	if !errors.As(err, &he) || he.TimedOut || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v: want a cancelled, not timed-out, *HookError", err)
	}
}

func TestHookStderrTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"fits", 10, []string{"ab", "cd"}, "abcd"},
		{"exactly full", 4, []string{"ab", "cd"}, "abcd"},
		{"drops the front", 4, []string{"abc", "def"}, "...cdef"},
		{"one big write", 4, []string{"abcdefgh"}, "...efgh"},
		{"big write after small", 4, []string{"x", "abcd"}, "...abcd"},
		{"trims space", 10, []string{"  err\n"}, "err"},
		{"empty", 4, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &tailBuffer{max: tc.max}
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if len(b.buf) > tc.max {
				t.Errorf("holds %d bytes, max %d", len(b.buf), tc.max)
			}
			if got := b.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRunHooksReal runs /bin/sh hooks as the runtime does.
func TestRunHooksReal(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh")
	}
	dir := t.TempDir()
	st := testState()
	t.Setenv("INITOS_HOOK_TEST_LEAK", "1")

	t.Run("stdin, argv and env", func(t *testing.T) {
		stdinFile := filepath.Join(dir, "state.json")
		argvFile := filepath.Join(dir, "argv")
		envFile := filepath.Join(dir, "env")
		inheritFile := filepath.Join(dir, "inherit")
		hooks := []specs.Hook{
			{Path: "/bin/sh", Args: []string{"sh", "-c", `cat > "$OUT"`}, Env: []string{"OUT=" + stdinFile}},
			{Path: "/bin/sh", Args: []string{"custom-argv0", "-c", `cat /proc/$$/cmdline > "$OUT"`}, Env: []string{"OUT=" + argvFile}},
			{Path: "/bin/sh", Args: []string{"sh", "-c", `echo "FOO=$FOO LEAK=${INITOS_HOOK_TEST_LEAK:-unset}" > "$OUT"`},
				Env: []string{"OUT=" + envFile, "FOO=bar"}, Timeout: intp(10)},
			// No env: inherited, as runc does.
			{Path: "/bin/sh", Args: []string{"sh", "-c", `echo "LEAK=$INITOS_HOOK_TEST_LEAK" > ` + inheritFile}},
			// A hook that does not read its stdin.
			{Path: "/bin/true"},
		}
		if err := RunHooks(context.Background(), hooks, st, HookCreateRuntime); err != nil {
			t.Fatal(err)
		}
		var got specs.State
		b, err := os.ReadFile(stdinFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("hook stdin %q is not JSON: %v", b, err)
		}
		if !reflect.DeepEqual(&got, st) {
			t.Errorf("hook read %+v, want %+v", got, *st)
		}
		argv, err := os.ReadFile(argvFile)
		if err != nil {
			t.Fatal(err)
		}
		if args := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00"); args[0] != "custom-argv0" {
			t.Errorf("argv = %q, want argv[0] %q", args, "custom-argv0")
		}
		for file, want := range map[string]string{envFile: "FOO=bar LEAK=unset\n", inheritFile: "LEAK=1\n"} {
			if b, err := os.ReadFile(file); err != nil || string(b) != want {
				t.Errorf("%s: %q, %v; want %q", filepath.Base(file), b, err, want)
			}
		}
	})

	t.Run("failing hook", func(t *testing.T) {
		after := filepath.Join(dir, "after")
		long := strings.Repeat("x", 3*hookStderrTail)
		hooks := []specs.Hook{
			{Path: "/bin/sh", Args: []string{"sh", "-c", `printf '%s' "$LONG" >&2; echo 'cannot set up network' >&2; exit 3`},
				Env: []string{"LONG=" + long}},
			{Path: "/bin/sh", Args: []string{"sh", "-c", "touch " + after}},
		}
		err := RunHooks(context.Background(), hooks, st, HookCreateContainer)
		var he *HookError
		if !errors.As(err, &he) {
			t.Fatalf("error %v: want a *HookError", err)
		}
		for _, w := range []string{"createContainer hook 0 (/bin/sh)", "exit status 3", `cannot set up network"`} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
		if len(he.Stderr) > hookStderrTail+3 || !strings.HasPrefix(he.Stderr, "...") {
			t.Errorf("stderr tail is %d bytes (max %d), starts %q", len(he.Stderr), hookStderrTail, he.Stderr[:10])
		}
		if _, err := os.Stat(after); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the hook after the failing one ran (stat: %v)", err)
		}
	})

	t.Run("missing program", func(t *testing.T) {
		err := RunHooks(context.Background(), []specs.Hook{{Path: filepath.Join(dir, "nope")}}, st, HookPoststart)
		if err == nil || !strings.Contains(err.Error(), "poststart hook 0 ("+filepath.Join(dir, "nope")+")") ||
			!errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v: want the path and ErrNotExist", err)
		}
	})

	t.Run("timeout kills the hook and its children", func(t *testing.T) {
		pidFile := filepath.Join(dir, "sleep.pid")
		hooks := []specs.Hook{{Path: "/bin/sh", Timeout: intp(1),
			Args: []string{"sh", "-c", `sleep 10 & echo $! > "$PIDFILE"; sleep 10`}, Env: []string{"PIDFILE=" + pidFile}}}
		start := time.Now()
		err := RunHooks(context.Background(), hooks, st, HookPoststart)
		took := time.Since(start)
		if took > 2500*time.Millisecond {
			t.Errorf("returned after %v with a 1s timeout", took)
		}
		t.Logf("timeout returned after %v", took)
		var he *HookError
		if !errors.As(err, &he) || !he.TimedOut {
			t.Fatalf("error %v: want a timed-out *HookError", err)
		}
		if !strings.Contains(err.Error(), "poststart hook 0 (/bin/sh): killed after its timeout of 1s") {
			t.Errorf("error %q does not name the stage, the hook and the timeout", err)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		// The background sleep was in the hook's process group: it is gone
		// (once init has reaped it).
		deadline := time.Now().Add(2 * time.Second)
		for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("the hook's child %d survived its timeout", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// isZombie reports whether pid has exited and waits for its parent.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // gone
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}
