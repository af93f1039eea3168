package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hook stages: the properties of config.json's "hooks" object
// (runtime-spec config.md, "POSIX-platform Hooks").
const (
	HookPrestart        = "prestart" // deprecated by the spec, still run
	HookCreateRuntime   = "createRuntime"
	HookCreateContainer = "createContainer"
	HookStartContainer  = "startContainer"
	HookPoststart       = "poststart"
	HookPoststop        = "poststop"
)

// hookStages are the stages in lifecycle order (runtime.md "Lifecycle").
var hookStages = []string{
	HookPrestart, HookCreateRuntime, HookCreateContainer,
	HookStartContainer, HookPoststart, HookPoststop,
}

// hookStderrTail bounds how much of a failing hook's stderr goes into its
// error: the last bytes, where the reason usually is.
const hookStderrTail = 4 << 10

// hookWaitDelay bounds the wait for a hook's stderr to close after the hook
// exited or was killed (a child it left behind may hold it open).
const hookWaitDelay = 2 * time.Second

// HookError is the failure of one hook.
type HookError struct {
	Stage string // "createRuntime", ...
	Index int    // position in the stage's array
	Path  string
	// TimedOut: the hook ran past its timeout and was killed.
	TimedOut bool
	Timeout  time.Duration
	// Stderr is the tail of the hook's standard error (at most 4 KiB).
	Stderr string
	// Err is the exit status (*exec.ExitError), the start failure,
	// context.DeadlineExceeded for a timeout, or the caller's ctx.Err().
	Err error
}

func (e *HookError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "running %s hook %d (%s): ", e.Stage, e.Index, e.Path)
	if e.TimedOut {
		fmt.Fprintf(&b, "killed after its timeout of %s", e.Timeout)
	} else {
		b.WriteString(e.Err.Error())
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, "; stderr: %q", e.Stderr)
	}
	return b.String()
}

func (e *HookError) Unwrap() error { return e.Err }

// hookExecFunc runs one hook to completion: stdin is its standard input,
// stderr receives its standard error. It kills the hook when ctx is done.
type hookExecFunc func(ctx context.Context, h specs.Hook, stdin []byte, stderr io.Writer) error

// RunHooks runs the hooks of one stage in order on the host (the runtime
// namespace), each with the container's state as JSON on its stdin. stage
// is one of the Hook* constants and names the stage in errors.
//
// For every stage but poststop it stops at the first failure and returns
// its *HookError; every hook is validated before the first one runs. For
// poststop it runs every hook and returns the failures joined.
//
// What the caller must do with an error (runtime-spec v1.3.0, runtime.md
// "Lifecycle", steps 3-5, 7, 9 and 13):
//   - prestart, createRuntime, createContainer, startContainer, poststart:
//     "If any ... hook fails, the runtime MUST generate an error, stop the
//     container, and continue the lifecycle at step 12" (destroy what
//     create built). Note that since runtime-spec 1.1 this holds for
//     poststart too; 1.0 said poststart failures were only warnings.
//   - poststop: "If any poststop hook fails, the runtime MUST log a
//     warning, but the remaining hooks and lifecycle continue as if the
//     hook had succeeded": log the error, do not fail delete.
//
// Where: prestart, createRuntime, poststart and poststop MUST resolve and
// execute in the runtime namespace, which is the host here. The
// createContainer path resolves in the runtime namespace but the hook
// "MUST be executed in the container namespace", and startContainer
// resolves and executes there: for a VM that is the guest. RunHooks only
// runs hooks on the host; Kata Containers likewise runs createContainer
// hooks on the host and startContainer hooks in the guest.
//
// Hooks without a timeout run until ctx is done.
func RunHooks(ctx context.Context, hooks []specs.Hook, state *specs.State, stage string) error {
	return runHooks(ctx, execHook, hooks, state, stage)
}

func runHooks(ctx context.Context, run hookExecFunc, hooks []specs.Hook, state *specs.State, stage string) error {
	if !isHookStage(stage) {
		return fmt.Errorf("running hooks: unknown stage %q (want one of %s)", stage, strings.Join(hookStages, ", "))
	}
	if len(hooks) == 0 {
		return nil
	}
	// "The state of the container MUST be passed to hooks over stdin"
	// (config.md, POSIX-platform Hooks).
	if state == nil {
		return fmt.Errorf("running %s hooks: no container state to pass on their stdin", stage)
	}
	stdin, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("running %s hooks: encoding the container state: %w", stage, err)
	}

	keepGoing := stage == HookPoststop
	if !keepGoing {
		// A fail-stop stage fails before running anything when any of its
		// hooks is invalid.
		for i, h := range hooks {
			if err := validateHook(stage, i, h); err != nil {
				return err
			}
		}
	}
	var errs []error
	// "Hooks MUST be called in the listed order." (config.md)
	for i, h := range hooks {
		err := validateHook(stage, i, h)
		if err == nil {
			err = runHook(ctx, run, stage, i, h, stdin)
		}
		if err != nil {
			if !keepGoing {
				return err
			}
			// poststop: "the remaining hooks and lifecycle continue as if
			// the hook had succeeded" (runtime.md, Lifecycle step 13).
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isHookStage(stage string) bool {
	for _, s := range hookStages {
		if s == stage {
			return true
		}
	}
	return false
}

func validateHook(stage string, i int, h specs.Hook) error {
	// "This specification extends the IEEE standard in that path MUST be
	// absolute." (config.md, hooks)
	if h.Path == "" {
		return fmt.Errorf("%s hook %d: path is missing (REQUIRED)", stage, i)
	}
	if !filepath.IsAbs(h.Path) {
		return fmt.Errorf("%s hook %d: path %q is not absolute (path MUST be absolute)", stage, i, h.Path)
	}
	// "If set, timeout MUST be greater than zero." (config.md, hooks)
	if h.Timeout != nil && *h.Timeout <= 0 {
		return fmt.Errorf("%s hook %d (%s): timeout %d is not greater than zero (timeout MUST be greater than zero)", stage, i, h.Path, *h.Timeout)
	}
	return nil
}

// runHook runs one valid hook with its timeout.
func runHook(ctx context.Context, run hookExecFunc, stage string, i int, h specs.Hook, stdin []byte) error {
	hctx := ctx
	var timeout time.Duration
	if h.Timeout != nil {
		// "timeout (int, OPTIONAL) is the number of seconds before aborting
		// the hook." (config.md, hooks)
		timeout = time.Duration(*h.Timeout) * time.Second
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stderr := &tailBuffer{max: hookStderrTail}
	err := run(hctx, h, stdin, stderr)
	if err == nil {
		return nil
	}
	he := &HookError{Stage: stage, Index: i, Path: h.Path, Timeout: timeout, Stderr: stderr.String(), Err: err}
	switch {
	case ctx.Err() != nil:
		he.Err = ctx.Err()
	case hctx.Err() != nil:
		he.TimedOut = true
		he.Err = context.DeadlineExceeded
	}
	return he
}

// execHook runs a hook as a child of this process, in its own process
// group so that a timeout kills whatever it started too.
func execHook(ctx context.Context, h specs.Hook, stdin []byte, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, h.Path)
	// "args (array of strings, OPTIONAL) with the same semantics as
	// execv's argv": args[0] is argv[0]. Without args, argv is {path}, as
	// in runc.
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	// "env ... with the same semantics as environ". A missing env (nil)
	// inherits this process's environment and an empty one is empty,
	// exactly as runc does.
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = hookWaitDelay
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The hook exited successfully; something it left running still
		// holds its stderr. That is the hook's business, not a failure.
		return nil
	}
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max       int
	buf       []byte
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.truncated = t.truncated || len(t.buf) > 0 || len(p) > t.max
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.truncated = true
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String is the tail without surrounding white space, with "..." in front
// when earlier output was dropped.
func (t *tailBuffer) String() string {
	s := strings.TrimSpace(string(t.buf))
	if t.truncated && s != "" {
		s = "..." + s
	}
	return s
}

// HooksFor is the hooks of one lifecycle stage of the spec's hooks (none
// for a nil h or an unknown stage).
func HooksFor(h *specs.Hooks, stage string) []specs.Hook {
	if h == nil {
		return nil
	}
	switch stage {
	case HookPrestart:
		return h.Prestart //nolint:staticcheck // deprecated by the spec, still run
	case HookCreateRuntime:
		return h.CreateRuntime
	case HookCreateContainer:
		return h.CreateContainer
	case HookStartContainer:
		return h.StartContainer
	case HookPoststart:
		return h.Poststart
	case HookPoststop:
		return h.Poststop
	}
	return nil
}
