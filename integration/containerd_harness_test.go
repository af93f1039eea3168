package integration

import (
	"os"
	"strings"
	"testing"
)

// TestContainerdHarnessRunc checks the private containerd itself with runc
// (no VM): the images are there, nerdctl runs a container on its default
// network and removes it, ctr runs one, CRI runs a pod (pause image, CNI)
// and a container in it. What it leaves running is the harness's cleanup
// to remove.
//
// It takes 6 to 9 s, so it runs only with INITOS_CONTAINERD_RUNC=1: the
// tests of the initos runtime use the same harness.
func TestContainerdHarnessRunc(t *testing.T) {
	if os.Getenv("INITOS_CONTAINERD_RUNC") != "1" {
		t.Skip("checks the containerd harness with runc (no VM, 6 to 9 s): set INITOS_CONTAINERD_RUNC=1 to run it")
	}
	c := newContainerd(t)

	for _, ns := range []string{nerdctlNamespace, criNamespace} {
		out := c.ok(t, "ctr", "--namespace", ns, "images", "ls", "--quiet")
		for _, img := range []string{containerdImage, pauseImage} {
			if !hasLine(out, img) {
				t.Errorf("image %s not in namespace %s; ctr images ls: %q", img, ns, out)
			}
		}
	}

	// The default network: nerdctl's OCI hook gives the container an
	// address on the private bridge.
	out := c.ok(t, "nerdctl", "run", "--rm", "--runtime", runcRuntimeType, containerdImage,
		"sh", "-c", "echo hi; ip -4 -o addr show eth0")
	lines := strings.SplitN(out, "\n", 2)
	if lines[0] != "hi" {
		t.Errorf("nerdctl run: stdout %q, want hi first", out)
	}
	subnet := strings.TrimSuffix(c.nerdctlSubnet, "0/24")
	if len(lines) < 2 || !strings.Contains(lines[1], " inet "+subnet) {
		t.Errorf("nerdctl run: eth0 has no address in %s: %q", c.nerdctlSubnet, out)
	}

	out = c.ok(t, "ctr", "run", "--rm", "--runtime", runcRuntimeType, "--fifo-dir", c.fifoDir,
		containerdImage, "harness-ctr", "echo", "hi from ctr")
	if out != "hi from ctr" {
		t.Errorf("ctr run: stdout %q, want %q", out, "hi from ctr")
	}

	// CRI: a pod (the pause image, an address on CRI's bridge) and a
	// container in it.
	pod := c.runPod(t, "harness", "runc")
	if ip := c.podIP(t, pod); !strings.HasPrefix(ip, strings.TrimSuffix(c.criSubnet, "0/24")) {
		t.Errorf("pod address %q not in %s", ip, c.criSubnet)
	}
	id := c.startContainer(t, pod, "hello", "sh", "-c", "echo hi from cri")
	if code := c.waitExited(t, id, settleTimeout); code != 0 {
		t.Errorf("CRI container: exit %d, want 0", code)
	}
	if out := c.ok(t, "crictl", "logs", id); out != "hi from cri" {
		t.Errorf("crictl logs: %q, want %q", out, "hi from cri")
	}

	// Left running for the harness's cleanup to remove: a pod with a
	// container, a nerdctl container, a ctr task.
	c.startContainer(t, pod, "sleeper", "sleep", "1000")
	c.ok(t, "nerdctl", "run", "--detach", "--runtime", runcRuntimeType, "--name", "harness-left", containerdImage, "sleep", "1000")
	c.ok(t, "ctr", "run", "--detach", "--runtime", runcRuntimeType, "--fifo-dir", c.fifoDir, containerdImage, "harness-ctr-left", "sleep", "1000")
}
