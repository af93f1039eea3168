package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/initos-runtime/initos-runtime/initrd"
)

// TestFindAgentHelper: the agent is used only with its process helper
// beside it, and an install that lacks it says so.
func TestFindAgentHelper(t *testing.T) {
	for _, tc := range []struct {
		name    string
		helper  func(dir string) error // makes dir/initos-exec, or not
		wantErr string
	}{
		{"agent and helper", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, initrd.HelperName), []byte("helper"), 0o755)
		}, ""},
		{"no helper", func(string) error { return nil }, "the process helper initos-exec belongs next to the agent"},
		{"a directory for the helper", func(dir string) error {
			return os.Mkdir(filepath.Join(dir, initrd.HelperName), 0o755)
		}, "is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			agent := filepath.Join(dir, "initos-agent")
			if err := os.WriteFile(agent, []byte("agent"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.helper(dir); err != nil {
				t.Fatal(err)
			}
			got, err := findAgent(Config{AgentPath: agent})
			if tc.wantErr == "" {
				if err != nil || got != agent {
					t.Fatalf("findAgent = %q, %v; want %q", got, err, agent)
				}
				h, err := findHelper(got)
				if want := filepath.Join(dir, initrd.HelperName); err != nil || h != want {
					t.Errorf("findHelper = %q, %v; want %q", h, err, want)
				}
				return
			}
			if !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), agent) {
				t.Errorf("findAgent = %q, %v; want ErrNoAgent saying %q and naming %q", got, err, tc.wantErr, agent)
			}
		})
	}
}
