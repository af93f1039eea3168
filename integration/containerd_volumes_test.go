package integration

import (
	"testing"

	"github.com/initos-runtime/initos-runtime/runtime"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// TestVolumesNerdctl: `nerdctl run -v` through containerd-shim-initos-v2
// on each share filesystem, in parallel, each with a private containerd
// (the shim reads the share filesystem from its config file): one
// container with -v dir:/data and -v dir:/ro:ro, checked from both sides
// by execs; the attributes of the mounts are compared with what runc (the
// containerd's default runtime) shows for the same mounts.
func TestVolumesNerdctl(t *testing.T) {
	needVMs(t)
	for _, fs := range shareFSes {
		t.Run(fs, func(t *testing.T) {
			t.Parallel()
			needShareFS(t, fs)
			c := newContainerd(t)
			if fs == vmm.Share9p {
				c.editInitosConfig(t, func(cfg *runtime.Config) { cfg.ShareFS = vmm.Share9p })
			}
			fx := newVolumeFixture(t)
			mounts := []string{"--network", "none", "-v", fx.data + ":/data", "-v", fx.ro + ":/ro:ro"}
			name := "ictd-vol-" + fs
			c.ok(t, "nerdctl", append(append([]string{"run", "-d", "--name", name, "--runtime", initosRuntimeType}, mounts...), containerdImage, "sleep", "3600")...)
			id := c.ok(t, "nerdctl", "inspect", "--format", "{{.ID}}", name)
			sh := guestShell(func(t *testing.T, script string, flags ...string) result {
				t.Helper()
				return c.nerdctl(t, append(append(append([]string{"exec"}, flags...), name), "sh", "-c", script)...)
			})
			runc := func(t *testing.T, script string) string {
				t.Helper()
				return c.ok(t, "nerdctl", append(append([]string{"run", "--rm", "--runtime", runcRuntimeType}, mounts...), containerdImage, "sh", "-c", script)...) + "\n"
			}

			t.Run("group", func(t *testing.T) {
				t.Run("share-fs", func(t *testing.T) { t.Parallel(); checkShareFS(t, sh, fs, "/data", "/ro") })
				t.Run("ownership", func(t *testing.T) {
					t.Parallel()
					checkOwnership(t, sh, runc, []string{"/data", "/data/owned", "/data/rw", "/ro", "/ro/file"}, nil)
				})
				t.Run("guest-writes", func(t *testing.T) { t.Parallel(); checkGuestWrites(t, sh, fx) })
				t.Run("host-writes", func(t *testing.T) { t.Parallel(); checkHostWrites(t, sh, fx) })
				t.Run("read-only", func(t *testing.T) { t.Parallel(); checkReadOnly(t, sh, fx) })
			})
			c.ok(t, "nerdctl", "rm", "--force", name)
			c.assertGone(t, id)
		})
	}
}
