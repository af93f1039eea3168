package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
			nerdctlCp(t, c, name)

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

// nerdctlCp checks `nerdctl cp` of running container name (whose /data/f
// holds "kept"): out of and into its root filesystem, and never the host's
// files (nerdctl copies through /proc/<task pid>/root while it runs).
func nerdctlCp(t *testing.T, c *containerd, name string) {
	t.Helper()
	out := t.TempDir()
	c.ok(t, "nerdctl", "cp", name+":/data/f", out)
	if got, err := os.ReadFile(filepath.Join(out, "f")); err != nil || string(got) != "kept\n" {
		t.Errorf("nerdctl cp out of the running container: %q (%v), want %q", got, err, "kept\n")
	}
	src := filepath.Join(t.TempDir(), "g")
	if err := os.WriteFile(src, []byte("copied-in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok(t, "nerdctl", "cp", src, name+":/data/g")
	// The guest caches metadata for about a second.
	poll(t, 5*time.Second, "copied-in file in the container", func() (bool, string) {
		r := c.run(t, nil, "nerdctl", "exec", name, "cat", "/data/g")
		return string(r.stdout) == "copied-in\n", string(r.stdout) + string(r.stderr)
	})
	hostDir := t.TempDir()
	hostOnly := filepath.Join(hostDir, "host-only")
	if err := os.WriteFile(hostOnly, []byte("host-only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := c.run(t, nil, "nerdctl", "cp", name+":"+hostOnly, out); r.code == 0 {
		t.Errorf("nerdctl cp %s:%s out of the running container succeeded: it read the host's file", name, hostOnly)
	}
	leak := filepath.Join(hostDir, "leak")
	r := c.run(t, nil, "nerdctl", "cp", src, name+":"+leak)
	if _, err := os.Lstat(leak); err == nil {
		t.Errorf("nerdctl cp into the running container (exit %d, %s) wrote the host's %s", r.code, strings.TrimSpace(string(r.stderr)), leak)
	}
}
