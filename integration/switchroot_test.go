package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// switchRootAnnotation makes a container PID 1 of its VM.
const switchRootAnnotation = "org.initos.mode=switch-root"

// TestSwitchRoot: a container in switch-root mode is PID 1 of its VM, and
// what runc's users expect still holds: stdout to the last byte, the exit
// status, exec, signals it handles, and a kill (which the kernel never
// delivers to PID 1) under the CLI and podman.
func TestSwitchRoot(t *testing.T) {
	needVMs(t)
	t.Run("cli", func(t *testing.T) {
		t.Parallel()
		s := busyboxSpec(t, "sh", "-c", `echo pid=$$; echo err >&2; head -c 100000 /dev/zero | tr '\0' x; echo; exit 3`)
		s.Annotations = map[string]string{"org.initos.mode": "switch-root"}
		r := runtimeCmd(t, nil, "run", "--bundle", writeBundle(t, s), "initos-sr-cli")
		if r.code != 3 {
			t.Fatalf("run: exit %d, want 3; stderr:\n%s", r.code, r.stderr)
		}
		lines := strings.Split(string(r.stdout), "\n")
		if lines[0] != "pid=1" {
			t.Errorf("first line %q, want pid=1", lines[0])
		}
		// The last bytes a PID 1 writes are not lost to the kernel's
		// panic at its exit.
		if len(lines) < 2 || lines[1] != strings.Repeat("x", 100000) {
			t.Errorf("stdout after pid=1: %d lines, want 100000 x", len(lines)-1)
		}
		if !strings.Contains(string(r.stderr), "err") {
			t.Errorf("stderr %q, want err", r.stderr)
		}
	})
	t.Run("podman", func(t *testing.T) {
		t.Parallel()
		p := newPodman(t)
		if !p.initos {
			t.Skip("switch-root is initos-runtime's")
		}
		r := p.run(t, nil, "run", "--rm", "--network", "none", "--annotation", switchRootAnnotation, podmanImage, "sh", "-c", "echo $$; exit 5")
		if r.code != 5 || string(r.stdout) != "1\n" {
			t.Errorf("podman run: exit %d stdout %q, want 5 and 1; stderr:\n%s", r.code, r.stdout, r.stderr)
		}

		// With a terminal, the container finds it as /dev/console (runc's
		// first process does; an init system writes there).
		r = p.run(t, nil, "run", "--rm", "-t", "--network", "none", "--annotation", switchRootAnnotation, podmanImage,
			"sh", "-c", "[ -c /dev/console ] && [ /dev/console -ef $(tty) ] && echo console")
		if strings.TrimSpace(string(r.stdout)) != "console" {
			t.Errorf("podman run -t: /dev/console is not the terminal: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}

		// A PID 1 that handles TERM stops with its own status.
		name := "initos-sr-term"
		switchRootDetached(t, p, name, "sh", "-c", `trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.2; done`)
		p.waitLogs(t, name, "ready", settleTimeout)
		// exec joins PID 1's namespaces; PID 1 is the container's shell.
		if got := p.ok(t, "exec", name, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.HasPrefix(got, "sh -c trap") {
			t.Errorf("exec: /proc/1/cmdline is %q, want the container's sh", got)
		}
		p.ok(t, "stop", "--time", "30", name)
		if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 7" {
			t.Errorf("state %q after podman stop, want exited 7", got)
		}
		if out, _ := p.logs(t, name); !strings.Contains(out, "bye") {
			t.Errorf("logs %q, want bye from the TERM trap", out)
		}

		// A PID 1 that ignores TERM: the kill after the timeout ends it
		// with 137, as runc's.
		name = "initos-sr-kill"
		switchRootDetached(t, p, name, "sh", "-c", `echo ready; while :; do sleep 0.2; done`)
		p.waitLogs(t, name, "ready", settleTimeout)
		t0 := time.Now()
		p.ok(t, "stop", "--time", "2", name)
		if took := time.Since(t0); took < 2*time.Second {
			t.Errorf("podman stop -t 2 took %s: PID 1 should have ignored TERM", took)
		}
		if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 137" {
			t.Errorf("state %q after podman stop -t 2, want exited 137", got)
		}
	})
}

// switchRootDetached is podman's detached for a switch-root container.
func switchRootDetached(t *testing.T, p *podman, name string, args ...string) {
	t.Helper()
	p.removeLater(t, name)
	p.ok(t, append([]string{"run", "-d", "--name", name, "--network", "none", "--annotation", switchRootAnnotation, podmanImage}, args...)...)
}

// TestSwitchRootSystemd: a Debian image with systemd runs as a machine
// under `podman run --systemd=always`: /sbin/init is switch-root without
// the annotation, systemd is PID 1 of the VM and boots to running (or
// degraded), exec works, and `podman stop` (systemd's SIGRTMIN+3) shuts
// it down with status 0 within the timeout.
func TestSwitchRootSystemd(t *testing.T) {
	needVMs(t)
	root := os.Getenv("INITOS_SYSTEMD_IMAGE")
	if root == "" {
		if os.Getenv("INITOS_INTEGRATION") == "1" {
			t.Fatal("INITOS_SYSTEMD_IMAGE is not set: scripts/test.sh builds the Debian systemd image and sets it")
		}
		t.Skip("INITOS_SYSTEMD_IMAGE not set (scripts/minbase.sh DIR systemd,systemd-sysv builds one)")
	}
	t.Parallel()
	p := newPodman(t)
	if !p.initos {
		t.Skip("switch-root is initos-runtime's")
	}
	tarball := filepath.Join(p.dir, "systemd.tar")
	if b, err := exec.Command("tar", "-C", root, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar of the systemd image: %v: %s", err, b)
	}
	image := "localhost/initos-systemd"
	p.ok(t, "import", "--change", "CMD=/sbin/init", tarball, image)

	name := "initos-sr-systemd"
	p.removeLater(t, name)
	p.ok(t, "run", "-d", "--name", name, "--network", "none", "--systemd=always", image, "/sbin/init")
	var state string
	poll(t, systemdBootTimeout, "systemctl is-system-running", func() (bool, string) {
		r := p.run(t, nil, "exec", name, "systemctl", "is-system-running")
		state = strings.TrimSpace(string(r.stdout))
		return state == "running" || state == "degraded", fmt.Sprintf("%q (exit %d) %s", state, r.code, r.stderr)
	})
	if state == "degraded" {
		failed := p.run(t, nil, "exec", name, "systemctl", "--failed", "--no-legend")
		t.Logf("degraded: failed units:\n%s", failed.stdout)
	}
	if got := p.ok(t, "exec", name, "cat", "/proc/1/comm"); got != "systemd" {
		t.Errorf("PID 1 is %q, want systemd", got)
	}
	t0 := time.Now()
	p.ok(t, "stop", "--time", "120", name)
	took := time.Since(t0)
	if got := p.inspect(t, name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 0" {
		t.Errorf("state %q after podman stop (%s), want exited 0", got, took.Round(time.Millisecond))
	}
	if took > 110*time.Second {
		t.Errorf("podman stop took %s: systemd's shutdown should end well within the timeout", took.Round(time.Second))
	}
}

// systemdBootTimeout bounds systemd's boot to is-system-running under TCG.
const systemdBootTimeout = 4 * time.Minute
