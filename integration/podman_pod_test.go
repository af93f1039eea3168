package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPodmanPod: the containers of a podman pod share its network (a port
// the pod publishes reaches a member's server; members reach each other on
// 127.0.0.1), its /dev/shm and its hostname, as under runc; `--network
// container:X` shares X's network; exec reaches the member, not the pod's
// infra container; a pod's stop ends each member by its own stop (a TERM
// handler's exit status stays its own); `podman pod rm` leaves nothing;
// `play kube` runs a two-container pod. Under initos-runtime the members
// join the infra container's VM (runtime/member.go); a member whose monitor
// is killed exits 137 and the pod keeps serving.
func TestPodmanPod(t *testing.T) {
	p := newPodman(t)
	// podman builds its pause image (the infra container) from catatonit.
	requireProgram(t, "catatonit", "catatonit", "/usr/bin/catatonit", "/usr/libexec/podman/catatonit")
	t.Parallel()
	suffix := strconv.FormatInt(time.Now().UnixNano()%100000, 10)
	pod, netName := "initos-pod-"+suffix, "initos-podnet-"+suffix
	p.createNetwork(t, netName)
	t.Cleanup(func() { p.run(t, nil, "pod", "rm", "--force", "--ignore", pod) })
	const port = 18081
	p.ok(t, "pod", "create", "--name", pod, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", port))

	www := t.TempDir()
	want := "served-in-" + pod + "\n"
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	web, term := pod+"-web", pod+"-term"
	webID := p.ok(t, "run", "-d", "--pod", pod, "--name", web, "-v", www+":/www:ro", podmanImage, "httpd", "-f", "-p", "80", "-h", "/www")
	waitServed(t, port, want)
	infraID := p.ok(t, "pod", "inspect", "--format", "{{.InfraContainerID}}", pod)

	// Another member: the same loopback, hostname and /dev/shm.
	r := p.run(t, nil, "run", "--rm", "--pod", pod, podmanImage, "sh", "-c",
		"wget -q -O- http://127.0.0.1/index.html && hostname && echo from-member > /dev/shm/shared")
	if r.code != 0 || string(r.stdout) != want+pod+"\n" {
		t.Fatalf("a second member: exit %d, stdout %q, stderr %q; want the pod's page and hostname %q", r.code, r.stdout, r.stderr, pod)
	}
	if got := p.ok(t, "exec", web, "cat", "/dev/shm/shared"); got != "from-member" {
		t.Errorf("/dev/shm/shared in %s: %q, want what another member of the pod wrote there", web, got)
	}
	// pod top lists each container's processes (psgo reads /proc in the
	// view of each container's pid): the infra container's catatonit and
	// the member's httpd, PID 1 each, and nothing of the host (the VM's
	// qemu and virtiofsd, conmon).
	top := p.ok(t, "pod", "top", pod, "pid", "args")
	for _, w := range []string{"catatonit", "httpd -f -p 80"} {
		if !regexp.MustCompile(`(?m)^\s*1\s+\S*` + regexp.QuoteMeta(w)).MatchString(top) {
			t.Errorf("podman pod top %s: no %q as PID 1:\n%s", pod, w, top)
		}
	}
	for _, host := range []string{"qemu-system", "virtiofsd", "conmon", "initos-runtime"} {
		if strings.Contains(top, host) {
			t.Errorf("podman pod top %s lists %s:\n%s", pod, host, top)
		}
	}
	// exec runs in the member (httpd is its PID 1), not in the infra container.
	if got := p.ok(t, "exec", web, "cat", "/proc/1/cmdline"); !strings.HasPrefix(got, "httpd") {
		t.Errorf("PID 1 as exec in %s sees it: %q, want httpd", web, got)
	}
	// --network container:X (podman refuses it for a pod's containers).
	base := pod + "-base"
	p.removeLater(t, base)
	p.ok(t, "run", "-d", "--name", base, "--network", netName, podmanImage, "sh", "-c",
		"echo served-by-base > /tmp/index.html; exec httpd -f -p 8080 -h /tmp")
	r = p.run(t, nil, "run", "--rm", "--network", "container:"+base, podmanImage, "sh", "-c",
		"until wget -q -O- http://127.0.0.1:8080/index.html; do sleep 0.2; done")
	if r.code != 0 || string(r.stdout) != "served-by-base\n" {
		t.Errorf("--network container:%s: exit %d, stdout %q, stderr %q", base, r.code, r.stdout, r.stderr)
	}
	p.ok(t, "rm", "--force", "--time", "0", base)

	testPodmanPodPause(t, p, pod, web, port, want)

	if p.initos {
		// A member's monitor killed: that member ends as by SIGKILL, the
		// pod serves on.
		killed := pod + "-killed"
		killedID := p.ok(t, "run", "-d", "--pod", pod, "--name", killed, podmanImage, "sh", "-c", "echo ready; exec sleep 3600")
		p.waitLogs(t, killed, "ready", settleTimeout)
		pid, err := strconv.Atoi(p.inspect(t, killed, "{{.State.Pid}}"))
		if err != nil || pid <= 1 {
			t.Fatalf("the pid of %s: %d, %v", killed, pid, err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if got := p.ok(t, "wait", killed); got != "137" {
			t.Errorf("podman wait %s after its monitor was killed: %q, want 137", killed, got)
		}
		p.ok(t, "rm", killed)
		p.assertRemoved(t, killedID)
		waitServed(t, port, want)
		root, _ := os.ReadDir(filepath.Join(p.stateDir(infraID), "root"))
		if len(root) != 2 {
			t.Errorf("the pod VM's root share holds %d entries after a member left, want 2 (the infra container's and %s's)", len(root), web)
		}
	}

	termID := p.ok(t, "run", "-d", "--pod", pod, "--name", term, podmanImage, "sh", "-c",
		`trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.2; done`)
	p.waitLogs(t, term, "ready", settleTimeout)
	p.ok(t, "pod", "stop", "--time", "5", pod)
	if got := p.inspect(t, term, "{{.State.ExitCode}}"); got != "3" {
		t.Errorf("%s after the pod's stop exited %s, want 3 (its TERM handler's)", term, got)
	}
	if out, _ := p.logs(t, term); !hasLine(out, "got-term") {
		t.Errorf("%s's logs %q lack its TERM handler's line", term, out)
	}
	p.ok(t, "pod", "rm", pod)
	for _, id := range []string{infraID, webID, termID} {
		p.assertRemoved(t, id)
	}

	t.Run("play-kube", func(t *testing.T) { testPodmanPlayKube(t, p, suffix) })
	t.Run("shared-pid", func(t *testing.T) { testPodmanPodSharedPid(t, p, suffix) })
}

// testPodmanPodSharedPid: in a pod made with --share pid its members see
// the infra container's catatonit as PID 1 and each other's processes.
func testPodmanPodSharedPid(t *testing.T, p *podman, suffix string) {
	pod := "initos-pidpod-" + suffix
	t.Cleanup(func() { p.run(t, nil, "pod", "rm", "--force", "--ignore", pod) })
	p.ok(t, "pod", "create", "--name", pod, "--network", "none", "--share", "pid,ipc,net,uts")
	sleeper := pod + "-sleeper"
	p.ok(t, "run", "-d", "--pod", pod, "--name", sleeper, podmanImage, "sleep", "3600")
	r := p.run(t, nil, "run", "--rm", "--pod", pod, podmanImage, "sh", "-c",
		"tr '\\0' ' ' < /proc/1/cmdline; echo; for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done")
	if r.code != 0 || !strings.Contains(strings.SplitN(string(r.stdout), "\n", 2)[0], "catatonit") || !strings.Contains(string(r.stdout), "sleep 3600") {
		t.Errorf("a member of a pod sharing its PID namespace: exit %d, stdout %q, stderr %q; want PID 1 catatonit and the other member's sleep", r.code, r.stdout, r.stderr)
	}
	p.ok(t, "pod", "rm", "--force", pod)
}

// testPodmanPodPause: pausing one member stops its processes alone (the
// others run and serve on); `podman pod pause` pauses every container of
// the pod and `pod unpause` lets them go on, as under runc. A counter
// member writes into the pod's shared /dev/shm, read through an exec in
// web. It writes a new file and renames it over the count: a read between
// the shell's truncation and its write would find the file empty.
func testPodmanPodPause(t *testing.T, p *podman, pod, web string, port int, want string) {
	counter := pod + "-counter"
	p.removeLater(t, counter)
	p.ok(t, "run", "-d", "--pod", pod, "--name", counter, podmanImage, "sh", "-c",
		"i=0; while :; do i=$((i+1)); echo $i > /dev/shm/count.new; mv /dev/shm/count.new /dev/shm/count; sleep 0.1; done")
	count := func() int {
		t.Helper()
		n, err := strconv.Atoi(p.ok(t, "exec", web, "cat", "/dev/shm/count"))
		if err != nil {
			t.Fatalf("the counter in %s's /dev/shm: %v", web, err)
		}
		return n
	}
	advances := func(what string) {
		t.Helper()
		start := count()
		deadline := time.Now().Add(settleTimeout)
		for count() == start {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the counter stayed at %d for %v", what, start, settleTimeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	stands := func(what string) {
		t.Helper()
		before := count()
		time.Sleep(time.Second)
		if after := count(); after != before {
			t.Errorf("%s: the counter went on from %d to %d", what, before, after)
		}
	}
	advances("the counter member")

	p.ok(t, "pause", counter)
	if got := p.inspect(t, counter, "{{.State.Status}}"); got != "paused" {
		t.Errorf("%s after pause is %q, want paused", counter, got)
	}
	stands("a paused member")
	waitServed(t, port, want) // the rest of the pod serves on
	p.ok(t, "unpause", counter)
	advances("a member unpaused")

	p.ok(t, "pod", "pause", pod)
	for _, c := range []string{counter, web} {
		if got := p.inspect(t, c, "{{.State.Status}}"); got != "paused" {
			t.Errorf("%s after the pod's pause is %q, want paused", c, got)
		}
	}
	p.ok(t, "pod", "unpause", pod)
	advances("the pod unpaused")
	waitServed(t, port, want)
	p.ok(t, "rm", "--force", "--time", "0", counter)
}

// testPodmanPlayKube: `podman play kube` of a pod whose client container
// fetches a page from its server container on 127.0.0.1.
func testPodmanPlayKube(t *testing.T, p *podman, suffix string) {
	name := "initos-kube-" + suffix
	yaml := filepath.Join(t.TempDir(), "pod.yaml")
	// The imported image has no PATH of its own; podman's run adds one,
	// play kube does not.
	spec := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
spec:
  restartPolicy: Never
  containers:
  - name: srv
    image: %[2]s
    env: [{name: PATH, value: /bin}]
    command: ["httpd", "-f", "-p", "8081", "-h", "/etc"]
  - name: cli
    image: %[2]s
    env: [{name: PATH, value: /bin}]
    command: ["sh", "-c", "until wget -q -O- http://127.0.0.1:8081/hostname; do sleep 0.2; done; echo; echo cli-done"]
`, name, podmanImage)
	if err := os.WriteFile(yaml, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.run(t, nil, "pod", "rm", "--force", "--ignore", name) })
	p.ok(t, "play", "kube", "--network", "none", yaml)
	cli := name + "-cli"
	p.waitLogs(t, cli, "cli-done", settleTimeout)
	if out, _ := p.logs(t, cli); !hasLine(out, name) {
		t.Errorf("the kube pod's client printed %q, want the server's /etc/hostname, %q", out, name)
	}
	p.ok(t, "play", "kube", "--down", yaml)
}
