package guestagent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLauncherMissingHelper: without its helper program the launcher
// fails each process naming the program, whether the helper would be
// forked in new namespaces or join a container's mount namespace.
func TestLauncherMissingHelper(t *testing.T) {
	r := newReaper()
	r.Run()
	t.Cleanup(r.Stop)
	missing := filepath.Join(t.TempDir(), "initos-exec")
	l := newHelperLauncher(r, missing)
	for _, tc := range []struct {
		name string
		req  launchRequest
	}{
		{"new namespaces", launchRequest{}},
		{"a joined mount namespace", launchRequest{JoinNamespacesOf: os.Getpid(), JoinNamespaces: []string{"mount"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := l.spawn(tc.req, []uintptr{0, 1, 2}, 0, nil)
			if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "process helper") {
				t.Errorf("spawn = %v, want an error naming the process helper %q", err, missing)
			}
		})
	}
}

func TestMountsUnder(t *testing.T) {
	mounted := []string{"/r", "/r/proc", "/r/proc/meminfo", "/r/procfoo", "/r/dev", "/r/proc/sys/fs"}
	if got, want := mountsUnder(mounted, "/r/proc"), []string{"/r/proc/meminfo", "/r/proc/sys/fs"}; !slices.Equal(got, want) {
		t.Errorf("mountsUnder = %q, want %q", got, want)
	}
	if got := mountsUnder(mounted, "/r/sys"); got != nil {
		t.Errorf("mountsUnder of none = %q", got)
	}
}
