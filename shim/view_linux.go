package shim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// A task's pid is a host process whose mount namespace is the container's
// view (the runtime's monitor does the same): clients take the task pid as
// the container's process and reach its files through it, as `nerdctl cp`
// of a running task does through /proc/<pid>/root. The VMM's pid would give
// them the host's root (`nerdctl cp f C:/etc/passwd` wrote the host's). So
// each task gets a view process: this binary, started with viewEnv set, in
// the container's network namespace, pivoted into the rootfs with the
// spec's host bind mounts (runtime.EnterContainerView); it lives until
// the shim closes its stdin (or ends).
const viewEnv = "INITOS_SHIM_VIEW"

// viewStartTimeout bounds the view process's setup.
const viewStartTimeout = 10 * time.Second

func init() {
	if IsView() {
		// EnterContainerView must run on the main thread, the one
		// /proc/<pid>/root and /proc/<pid>/ns show.
		goruntime.LockOSThread()
	}
}

// viewSpec is what the view process gets in viewEnv.
type viewSpec struct {
	Rootfs string        `json:"rootfs"`
	Mounts []specs.Mount `json:"mounts,omitempty"`
	Netns  string        `json:"netns,omitempty"`
}

// IsView reports whether this process is a task's view process.
func IsView() bool { return os.Getenv(viewEnv) != "" }

// RunView is the view process: it joins the network namespace, enters the
// container's view, says "ok" on stdout and waits for stdin's end. It
// returns the process's exit code.
func RunView() int {
	var v viewSpec
	if err := json.Unmarshal([]byte(os.Getenv(viewEnv)), &v); err != nil {
		fmt.Printf("error: parsing %s: %v\n", viewEnv, err)
		return 1
	}
	os.Unsetenv(viewEnv)
	if err := enterView(v); err != nil {
		fmt.Printf("error: %v\n", err)
		return 1
	}
	fmt.Println("ok")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func enterView(v viewSpec) error {
	if v.Netns != "" {
		fd, err := unix.Open(v.Netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening network namespace %q: %w", v.Netns, err)
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("joining network namespace %q: %w", v.Netns, err)
		}
	}
	return runtime.EnterContainerView(v.Rootfs, v.Mounts, runtime.MountProcfs)
}

// viewProcess is a running view process.
type viewProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed once it has exited
}

// startViewFunc starts a task's view process; tests replace it.
type startViewFunc func(rootfs string, mounts []specs.Mount, netns string) (view, error)

// view is what a task needs of its view process.
type view interface {
	Pid() uint32
	Stop() error
}

// startView starts the view process of a task whose rootfs, bind mounts
// and network namespace (the VM's; "" for the shim's) are given, and waits
// until it has entered the view. On error nothing is left running.
func startView(rootfs string, mounts []specs.Mount, netns string) (view, error) {
	env, err := json.Marshal(viewSpec{Rootfs: rootfs, Mounts: mounts, Netns: netns})
	if err != nil {
		return nil, fmt.Errorf("encoding the view of %q: %w", rootfs, err)
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), viewEnv+"="+string(env))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the view process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("starting the view process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the view process: %w", err)
	}
	v := &viewProcess{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(v.done)
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s == "ok" {
			return v, nil
		}
		_ = v.Stop()
		if s == "" {
			s = "exited without a word"
		}
		return nil, fmt.Errorf("view process of %q: %s", rootfs, s)
	case <-time.After(viewStartTimeout):
		_ = v.Stop()
		return nil, fmt.Errorf("view process of %q: not ready after %s", rootfs, viewStartTimeout)
	}
}

// Pid is the view process's host pid.
func (v *viewProcess) Pid() uint32 { return uint32(v.cmd.Process.Pid) }

// Stop ends the view process (its stdin closed, then SIGKILL after a
// moment) and waits for it.
func (v *viewProcess) Stop() error {
	_ = v.stdin.Close()
	select {
	case <-v.done:
		return nil
	case <-time.After(2 * time.Second):
	}
	if err := v.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing the view process %d: %w", v.cmd.Process.Pid, err)
	}
	select {
	case <-v.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("view process %d did not exit after SIGKILL", v.cmd.Process.Pid)
	}
}
