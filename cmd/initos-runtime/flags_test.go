package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// TestPreserveFds: runc's --preserve-fds above 0 is refused by each verb
// that takes it, before anything is made, naming the flag; 0 passes.
func TestPreserveFds(t *testing.T) {
	cmds := []*cli.Command{createCommand(), runCommand(), execCommand()}
	for _, args := range [][]string{
		{"create", "--preserve-fds", "1", "--bundle", "/nonexistent", "c"},
		{"run", "--preserve-fds", "2", "--bundle", "/nonexistent", "c"},
		{"exec", "--preserve-fds", "1", "c", "true"},
	} {
		_, err := runTestApp(t, cmds, args...)
		if !errors.Is(err, runtime.ErrUnsupported) || !strings.Contains(err.Error(), "--preserve-fds") {
			t.Errorf("%s: %v, want ErrUnsupported naming --preserve-fds", strings.Join(args, " "), err)
		}
	}
	_, err := runTestApp(t, cmds, "create", "--preserve-fds", "0", "--bundle", "/nonexistent", "c")
	if err == nil || strings.Contains(err.Error(), "preserve-fds") {
		t.Errorf("--preserve-fds 0: %v, want the bundle's error", err)
	}
}
