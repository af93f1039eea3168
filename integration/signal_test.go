package integration

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunForwardsSignals checks that a signal sent to `initos-runtime run`
// reaches the container's process in the VM, as with runc run.
func TestRunForwardsSignals(t *testing.T) {
	needVMs(t)
	t.Parallel()
	s := busyboxSpec(t, "sh", "-c", `trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 1; done`)
	id := "bb-signal"
	ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.bin, "--config", env.config, "run", "--bundle", writeBundle(t, s), id)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer assertNothingLeft(t, id)
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("first line %q, want ready; stderr:\n%s", lines.Text(), stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for lines.Scan() {
		rest = append(rest, lines.Text())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("run did not end within 2 minutes of SIGTERM")
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code != 42 || strings.Join(rest, "\n") != "got-term" {
		t.Fatalf("exit %d, output after ready %q; want 42 and got-term; stderr:\n%s", code, rest, stderr.String())
	}
}
