package integration

import (
	"testing"
)

// containerdRootfsChanges writes to a container's root filesystem: a new
// file, an append to a lower file, a lower directory removed; then sync.
const containerdRootfsChanges = "set -e; mkdir /data; echo kept > /data/f; echo more >> /etc/group; rm -r /root; sync"

// containerdRootfsState prints what containerdRootfsChanges made;
// containerdRootfsWant is its output after them.
const (
	containerdRootfsState = "cat /data/f; tail -n 1 /etc/group; if [ -e /root ]; then echo root-present; else echo root-gone; fi"
	containerdRootfsWant  = "kept\nmore\nroot-gone\n"
)

// TestContainerdRootfsWrites (issue 11): through nerdctl, what a container
// writes to its root filesystem is in its snapshot, as under runc: it
// survives `nerdctl stop` and `nerdctl start`, and `nerdctl commit` of the
// container holds it (read back by a runc container of the committed
// image: what is checked is the commit, not the runtime). runc's subtest
// checks the test itself; initos's boots 2 VMs.
func TestContainerdRootfsWrites(t *testing.T) {
	c := newContainerd(t)
	for _, rt := range []struct{ name, typ string }{{"runc", runcRuntimeType}, {"initos", initosRuntimeType}} {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			name := "ictd-rw-" + rt.name
			c.ok(t, "nerdctl", append([]string{"run", "-d", "--name", name, "--network", "none", "--runtime", rt.typ, containerdImage}, rootfsPauseArgs...)...)
			id := c.ok(t, "nerdctl", "inspect", "--format", "{{.ID}}", name)
			state := func(when string) {
				t.Helper()
				if got := c.ok(t, "nerdctl", "exec", name, "sh", "-c", containerdRootfsState) + "\n"; got != containerdRootfsWant {
					t.Errorf("%s: the container's root filesystem shows %q, want %q", when, got, containerdRootfsWant)
				}
			}
			c.ok(t, "nerdctl", "exec", name, "sh", "-c", containerdRootfsChanges)
			state("after the writes")

			c.ok(t, "nerdctl", "stop", "--time", "30", name)
			if got := c.ok(t, "nerdctl", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name); got != "exited 0" {
				t.Errorf("state %q after nerdctl stop, want exited 0", got)
			}
			c.ok(t, "nerdctl", "start", name)
			state("after nerdctl stop and start")

			img := "localhost/initos-rw-committed-" + rt.name + ":latest"
			c.ok(t, "nerdctl", "commit", name, img)
			if got := c.ok(t, "nerdctl", "run", "--rm", "--network", "none", "--runtime", runcRuntimeType, img, "sh", "-c", containerdRootfsState) + "\n"; got != containerdRootfsWant {
				t.Errorf("a container of the committed image shows %q, want %q", got, containerdRootfsWant)
			}

			c.ok(t, "nerdctl", "rm", "--force", name)
			c.assertGone(t, id)
			c.ok(t, "nerdctl", "rmi", img)
		})
	}
}
