package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 4: nerdctl, ctr and CRI pods through containerd-shim-initos-v2,
// each container (or pod) in a VM. One private containerd serves the
// subtests, which run in parallel.
func TestContainerdShim(t *testing.T) {
	c := newContainerd(t)
	rt := "--runtime=" + initosRuntimeType

	t.Run("group", func(t *testing.T) {
		t.Run("nerdctl run exit codes", func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				script string
				code   int
			}{{"echo out; echo err >&2", 0}, {"exit 3", 3}, {"sh -c 'kill -9 $$'; exit $?", 137}} {
				r := c.nerdctl(t, "run", "--rm", rt, containerdImage, "sh", "-c", tc.script)
				if r.code != tc.code {
					t.Errorf("nerdctl run %q: exit %d, want %d\nstderr: %s", tc.script, r.code, tc.code, r.stderr)
				}
				if tc.code == 0 && (string(r.stdout) != "out\n" || !strings.Contains(string(r.stderr), "err\n")) {
					t.Errorf("nerdctl run: stdout %q stderr %q", r.stdout, r.stderr)
				}
			}
		})

		t.Run("nerdctl switch-root", func(t *testing.T) {
			t.Parallel()
			ann := "--annotation=org.initos.mode=switch-root"
			r := c.nerdctl(t, "run", "--rm", rt, ann, containerdImage, "sh", "-c", "echo $$; exit 4")
			if r.code != 4 || string(r.stdout) != "1\n" {
				t.Errorf("nerdctl run in switch-root: exit %d, stdout %q; want 4 and PID 1\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			name := "ictd-switch-root"
			c.ok(t, "nerdctl", "run", "-d", "--name", name, rt, ann, containerdImage, "sh", "-c", "echo started; while true; do sleep 0.2; done")
			defer c.ok(t, "nerdctl", "rm", "-f", name)
			poll(t, settleTimeout, "logs of "+name, func() (bool, string) {
				out := c.ok(t, "nerdctl", "logs", name)
				return hasLine(out, "started"), out
			})
			if out := c.ok(t, "nerdctl", "exec", name, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"); !strings.HasPrefix(out, "sh -c echo started") {
				t.Errorf("nerdctl exec: PID 1 is %q, want the container's sh", out)
			}
			// The kernel drops a SIGKILL to PID 1: the runtime stops it.
			c.ok(t, "nerdctl", "kill", name)
			if out := c.ok(t, "nerdctl", "wait", name); out != "137" {
				t.Errorf("nerdctl wait after kill: %q, want 137", out)
			}
		})

		t.Run("nerdctl detached", func(t *testing.T) {
			t.Parallel()
			name := "ictd-detached"
			c.ok(t, "nerdctl", "run", "-d", "--name", name, rt, "--cap-add", "SYS_TIME", containerdImage,
				"sh", "-c", `trap 'echo got-usr1' USR1; echo started; while true; do sleep 0.2; done`)
			poll(t, settleTimeout, "logs of "+name, func() (bool, string) {
				out := c.ok(t, "nerdctl", "logs", name)
				return hasLine(out, "started"), out
			})
			if out := c.ok(t, "nerdctl", "exec", name, "sh", "-c", "echo from-exec; cat /proc/1/cmdline >/dev/null"); out != "from-exec" {
				t.Errorf("nerdctl exec: %q", out)
			}
			// nerdctl 2.2 exits 1 and names the exec's code (docker would
			// exit with it).
			if r := c.nerdctl(t, "exec", name, "sh", "-c", "exit 5"); r.code == 0 || !strings.Contains(string(r.stderr), "exit code 5") {
				t.Errorf("nerdctl exec exit 5: exit %d: %s", r.code, r.stderr)
			}
			// exec -it: a terminal in the guest, through script(1)'s pty.
			out := c.terminal(t, "nerdctl exec -it "+name+" sh -c 'tty; stty size'", "stty cols 91 rows 27")
			if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "27 91") {
				t.Errorf("nerdctl exec -it: %q, want a pty of 27x91", out)
			}
			// Stats come from the container's cgroup in the guest.
			id := c.ok(t, "nerdctl", "inspect", "--format", "{{.ID}}", name)
			metrics := c.ok(t, "ctr", "--namespace", nerdctlNamespace, "task", "metrics", id)
			if !regexp.MustCompile(`pids\.current\s+[1-9]`).MatchString(metrics) || !regexp.MustCompile(`memory\.usage\s+[1-9]`).MatchString(metrics) {
				console, _ := os.ReadFile(filepath.Join(c.shimStateDir(nerdctlNamespace, id), "console.log"))
				t.Errorf("ctr task metrics: no pids or memory usage: %s\nconsole: %s", metrics, console)
			}
			// The shim's VM follows a step of the host's clock.
			checkClockFollowsHost(t, func(args ...string) string { return c.ok(t, "nerdctl", append([]string{"exec", name}, args...)...) })
			c.ok(t, "nerdctl", "kill", "-s", "USR1", name)
			poll(t, settleTimeout, "the USR1 trap", func() (bool, string) {
				out := c.ok(t, "nerdctl", "logs", name)
				return hasLine(out, "got-usr1"), out
			})
			c.ok(t, "nerdctl", "stop", "-t", "2", name)
			c.ok(t, "nerdctl", "rm", name)
			c.assertGone(t, id)
		})

		t.Run("nerdctl run -it", func(t *testing.T) {
			t.Parallel()
			out := c.terminal(t, "nerdctl run --rm -it "+rt+" "+containerdImage+" sh -c 'tty; stty size; exit 6'; echo rc=$?", "stty cols 83 rows 21")
			if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "21 83") || !strings.Contains(out, "rc=6") {
				t.Errorf("nerdctl run -it: %q, want a pty of 21x83 and exit 6", out)
			}
		})

		// SIGKILL of the VMM, or of the virtiofsd serving the
		// container's root (its files gone from under the guest, so the
		// VM is stopped), kills the container's processes: the task exits
		// 137, as for any container killed by SIGKILL, and rm leaves
		// nothing.
		for _, f := range []struct {
			name string
			kill func(t testing.TB, dir string)
		}{
			{"vmm", killVMM},
			{"virtiofsd", func(t testing.TB, dir string) {
				if !killVirtiofsd(t, dir) {
					t.Skipf("no virtiofsd serves %s (the root is shared over 9p here)", dir)
				}
			}},
		} {
			t.Run(f.name+" killed", func(t *testing.T) {
				t.Parallel()
				name := "ictd-" + f.name + "-killed"
				c.ok(t, "nerdctl", "run", "-d", "--name", name, rt, containerdImage, "sleep", "3600")
				id := c.ok(t, "nerdctl", "inspect", "--format", "{{.ID}}", name)
				defer c.assertGone(t, id)
				defer c.ok(t, "nerdctl", "rm", "-f", name)
				f.kill(t, c.shimStateDir(nerdctlNamespace, id))
				poll(t, settleTimeout, "the task to exit after its "+f.name+" was killed", func() (bool, string) {
					out := c.ok(t, "nerdctl", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
					return out == "exited 137", out
				})
			})
		}

		t.Run("shim killed", func(t *testing.T) {
			t.Parallel()
			// A shim server that dies (OOM killer, kill -9) takes its VM
			// with it; containerd's cleanup ("shim delete") removes the
			// rest: nothing of the container may stay.
			name := "ictd-orphan"
			c.ok(t, "nerdctl", "run", "-d", "--name", name, rt, containerdImage, "sleep", "3600")
			id := c.ok(t, "nerdctl", "inspect", "--format", "{{.ID}}", name)
			killOnly(t, "shim of "+id, processesOf("containerd-shim-initos-v2 -namespace "+nerdctlNamespace+" -id "+id, ""))
			poll(t, settleTimeout, "the task to stop after its shim died", func() (bool, string) {
				out := c.ok(t, "nerdctl", "inspect", "--format", "{{.State.Status}}", name)
				return out != "running", out
			})
			c.ok(t, "nerdctl", "rm", "-f", name)
			c.assertGone(t, id)
			if vmms := vmmsOf(c.shimStateDir(nerdctlNamespace, id)); len(vmms) != 0 {
				t.Errorf("the VMM outlived its shim: %v", vmms)
			}
		})

		t.Run("nerdctl publish", func(t *testing.T) {
			t.Parallel()
			name := "ictd-web"
			c.ok(t, "nerdctl", "run", "-d", "--name", name, "-p", "127.0.0.1:18091:80", rt, containerdImage,
				"sh", "-c", "echo served-by-initos > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
			var body string
			poll(t, settleTimeout, "http://127.0.0.1:18091/", func() (bool, string) {
				resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:18091/index.html")
				if err != nil {
					return false, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
				return resp.StatusCode == 200, resp.Status
			})
			if body != "served-by-initos\n" {
				t.Errorf("published port served %q", body)
			}
			id := c.ok(t, "nerdctl", "inspect", "--format", "{{.ID}}", name)
			c.ok(t, "nerdctl", "rm", "-f", name)
			c.assertGone(t, id)
		})

		t.Run("ctr run and events", func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), containerdCmdTimeout)
			defer cancel()
			ev := c.command(ctx, "ctr", "events")
			out, err := ev.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := ev.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); ev.Wait() }()
			lines := make(chan string, 64)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			id := "ictd-ctr"
			r := c.ctr(t, "run", "--rm", rt, "--fifo-dir", c.fifoDir, containerdImage, id, "sh", "-c", "echo via-ctr; exit 4")
			if r.code != 4 || string(r.stdout) != "via-ctr\n" {
				t.Errorf("ctr run: exit %d stdout %q stderr %s", r.code, r.stdout, r.stderr)
			}
			// containerd's order: create, start, exit, delete.
			want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
			var got []string
			deadline := time.After(settleTimeout)
			for len(got) < len(want) {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("ctr events ended; saw %v", got)
					}
					for _, topic := range want {
						if strings.Contains(l, " "+topic+" ") && strings.Contains(l, `"`+id+`"`) {
							got = append(got, topic)
						}
					}
				case <-deadline:
					t.Fatalf("events of %s: saw %v, want %v", id, got, want)
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("events of %s: %v, want %v", id, got, want)
			}
			c.assertGone(t, id)
		})

		t.Run("cri host namespaces refused, no shim left", func(t *testing.T) {
			t.Parallel()
			// A VM cannot share the node's network, processes or IPC:
			// RunPodSandbox fails naming it, and the shim started for it
			// ends.
			for _, tc := range []struct{ option, want string }{
				{"network", "host's network"}, {"pid", "hostPID: true"}, {"ipc", "hostIPC: true"},
			} {
				p := c.podConfig(t, "ictd-host"+tc.option, map[string]any{
					"linux": map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{tc.option: 2}}},
				})
				r := c.crictl(t, "runp", "--runtime", initosHandler, p.config)
				if r.code == 0 || !strings.Contains(string(r.stderr), tc.want) {
					t.Errorf("crictl runp of a pod with the node's %s namespace: exit %d, stdout %q, stderr %q; want a refusal with %q",
						tc.option, r.code, r.stdout, r.stderr, tc.want)
				}
			}
			poll(t, settleTimeout, "the refused sandboxes' shims to end", func() (bool, string) {
				left := c.strayShims(t)
				return len(left) == 0, strings.Join(left, "; ")
			})
		})

		t.Run("cri stop of a process that ignores TERM", func(t *testing.T) {
			t.Parallel()
			// critest's "runtime should support stopping container": after
			// the timeout the kill must end it, as under runc.
			pod := c.runPod(t, "ictd-stop", initosHandler)
			id := c.startContainer(t, pod, "stubborn", "sh", "-c", `trap "" TERM; echo ready; while true; do sleep 1; done`)
			poll(t, settleTimeout, "the stubborn container's trap", func() (bool, string) {
				r := c.crictl(t, "logs", id)
				return strings.Contains(string(r.stdout), "ready"), string(r.stdout)
			})
			t0 := time.Now()
			c.ok(t, "crictl", "stop", "--timeout", "3", id)
			if took := time.Since(t0); took > 30*time.Second {
				t.Errorf("crictl stop --timeout 3 took %s", took.Round(time.Second))
			}
			if code := c.waitExited(t, id, settleTimeout); code != 137 {
				t.Errorf("exit code %d after the kill, want 137", code)
			}
			c.ok(t, "crictl", "rm", id)
			c.ok(t, "crictl", "stopp", pod.id)
			c.ok(t, "crictl", "rmp", pod.id)
			c.assertGone(t, id)
		})

		t.Run("cri stop of top", func(t *testing.T) {
			t.Parallel()
			// critest's stop specs run busybox top, which ends on TERM: the
			// stop must not wait for its timeout's kill.
			pod := c.runPod(t, "ictd-stop-top", initosHandler)
			id := c.startContainer(t, pod, "top", "top")
			t0 := time.Now()
			c.ok(t, "crictl", "stop", "--timeout", "60", id)
			if took := time.Since(t0); took > 30*time.Second {
				t.Errorf("crictl stop --timeout 60 of top took %s: TERM should end it", took.Round(time.Second))
			}
			if code := c.waitExited(t, id, settleTimeout); code == 137 {
				t.Errorf("exit code 137: top was killed, not ended by TERM")
			}
			c.ok(t, "crictl", "rm", id)
			c.ok(t, "crictl", "stopp", pod.id)
			c.ok(t, "crictl", "rmp", pod.id)
		})

		t.Run("cri image volume and shared shm", func(t *testing.T) {
			t.Parallel()
			// An image as a read-only volume (containerd mounts it on the
			// host and binds it in), and the pod's /dev/shm, which its
			// containers share as under runc.
			pod := c.runPod(t, "ictd-imgvol", initosHandler)
			a := c.startContainerConfig(t, pod, "a", map[string]any{"mounts": []any{map[string]any{
				"container_path": "/mnt/iv", "readonly": true, "image": map[string]any{"image": containerdImage}}}},
				"sh", "-c", "test -x /mnt/iv/bin/busybox && echo image-volume-ok; touch /mnt/iv/x 2>/dev/null || echo read-only-ok; "+
					"echo from-a > /dev/shm/shared; echo ready; while true; do sleep 1; done")
			poll(t, settleTimeout, "container a's ready line", func() (bool, string) {
				r := c.crictl(t, "logs", a)
				return strings.Contains(string(r.stdout), "ready"), string(r.stdout)
			})
			if out := string(c.crictl(t, "logs", a).stdout); !strings.Contains(out, "image-volume-ok") || !strings.Contains(out, "read-only-ok") {
				t.Errorf("container a with an image volume printed %q, want image-volume-ok and read-only-ok", out)
			}
			b := c.startContainer(t, pod, "b", "cat", "/dev/shm/shared")
			if code := c.waitExited(t, b, settleTimeout); code != 0 {
				t.Errorf("cat /dev/shm/shared in container b exited %d", code)
			}
			if out := string(c.crictl(t, "logs", b).stdout); out != "from-a\n" {
				t.Errorf("container b read %q from the pod's /dev/shm, want what a wrote", out)
			}
			c.ok(t, "crictl", "rm", "-f", a, b)
			c.ok(t, "crictl", "stopp", pod.id)
			c.ok(t, "crictl", "rmp", pod.id)
			c.assertGone(t, a)
		})

		t.Run("cri portforward", func(t *testing.T) {
			t.Parallel()
			testCRIPortForward(t, c)
		})

		t.Run("cri pod shared pid", func(t *testing.T) {
			t.Parallel()
			// critest's "runtime should support PodPID": with
			// shareProcessNamespace (NamespaceMode POD) the pod's containers
			// live in the sandbox's PID namespace, as under runc: PID 1 is
			// the pause process, each sees the others' processes, execs
			// work, and the end of the sandbox's process ends them all.
			shared := map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 0}}}
			pod := c.runPodWith(t, "ictd-podpid", initosHandler, shared)
			a := c.startContainerWith(t, pod, "a", shared, "sh", "-c", "exec sleep 1111")
			b := c.startContainerWith(t, pod, "b", shared, "sh", "-c", "exec sleep 2222")
			poll(t, settleTimeout, "b to see a's sleep", func() (bool, string) {
				r := c.crictl(t, "exec", b, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o pid,args")
				out := string(r.stdout)
				return r.code == 0 && strings.Contains(out, "sleep 1111") && strings.Contains(out, "sleep 2222"), fmt.Sprintf("exit %d: %s %s", r.code, r.stdout, r.stderr)
			})
			for id, who := range map[string]string{a: "a", b: "b"} {
				r := c.crictl(t, "exec", id, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
				if out := string(r.stdout); r.code != 0 || !strings.Contains(out, "trap 'exit 0'") {
					t.Errorf("container %s: PID 1 is %q (exit %d, %s), want the pod's pause process", who, out, r.code, r.stderr)
				}
			}
			// a's own view lists b's process too; its processes (Pids) stay its own.
			if r := c.crictl(t, "exec", a, "sh", "-c", "ps -o args | grep -c '^sleep 2222'"); r.code != 0 || strings.TrimSpace(string(r.stdout)) != "1" {
				t.Errorf("a does not see b's process: exit %d, %q %s", r.code, r.stdout, r.stderr)
			}
			// The sandbox's process ends (pause traps TERM): the kernel ends
			// the namespace, members included, as under runc.
			c.ok(t, "crictl", "exec", a, "kill", "1")
			for id, who := range map[string]string{a: "a", b: "b"} {
				if code := c.waitExited(t, id, settleTimeout); code != 137 {
					t.Errorf("container %s exited with %d after the sandbox's process ended, want 137 (SIGKILL)", who, code)
				}
			}
			c.removePod(t, pod, a, b)
		})

		t.Run("cri mounts readonly", func(t *testing.T) {
			t.Parallel()
			// critest's Container Mount Readonly specs and the Bidirectional
			// refusal: a host path with a tmpfs mounted below it, bound
			// read-only (runc's ro: the tmpfs stays writable), recursively
			// read-only (rro: it does not), rro with a writable mount
			// (containerd refuses), and Bidirectional propagation (refused
			// naming it: a VM's mounts cannot reach the host).
			host := t.TempDir()
			tmpfs := filepath.Join(host, "tmpfs")
			if err := os.Mkdir(tmpfs, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("none", tmpfs, "tmpfs", 0, ""); err != nil {
				t.Fatal(err)
			}
			defer syscall.Unmount(tmpfs, syscall.MNT_DETACH) // unless the test got to it
			pod := c.runPod(t, "ictd-rro", initosHandler)
			defer func() {
				c.crictl(t, "stopp", pod.id)
				c.crictl(t, "rmp", pod.id)
			}()
			mount := func(extra map[string]any) map[string]any {
				m := map[string]any{"host_path": host, "container_path": "/mnt", "readonly": true}
				for k, v := range extra {
					m[k] = v
				}
				return map[string]any{"mounts": []any{m}}
			}
			ro := c.startContainerConfig(t, pod, "ro", mount(nil), "sleep", "3600")
			if r := c.crictl(t, "exec", ro, "touch", "/mnt/tmpfs/file"); r.code != 0 {
				t.Errorf("touch in the tmpfs below a non-recursive read-only bind: exit %d, %s", r.code, r.stderr)
			} else if _, err := os.Stat(filepath.Join(tmpfs, "file")); err != nil {
				t.Errorf("the file written in the container is not in the host's tmpfs: %v", err)
			}
			if r := c.crictl(t, "exec", ro, "sh", "-c", "touch /mnt/top 2>&1"); r.code == 0 || !strings.Contains(string(r.stdout), "Read-only file system") {
				t.Errorf("touch at the top of a read-only bind: exit %d, %q; want Read-only file system", r.code, r.stdout)
			}
			rro := c.startContainerConfig(t, pod, "rro", mount(map[string]any{"recursive_read_only": true}), "sleep", "3600")
			for _, f := range []string{"/mnt/tmpfs/foo", "/mnt/top"} {
				if r := c.crictl(t, "exec", rro, "sh", "-c", "touch "+f+" 2>&1"); r.code == 0 || !strings.Contains(string(r.stdout), "Read-only file system") {
					t.Errorf("touch %s under a recursive read-only bind: exit %d, %q; want Read-only file system", f, r.code, r.stdout)
				}
			}
			// critest removes the host directory mounted on below the
			// volume while the containers run (under runc their copies of
			// the mount are in their own namespaces): the host's namespace
			// holds none.
			if err := syscall.Unmount(tmpfs, syscall.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(tmpfs); err != nil {
				t.Errorf("removing the host's mount point below the volumes of running containers: %v", err)
			}
			create := func(name string, fields map[string]any) result {
				config := filepath.Join(c.dir, "pods", pod.name+"-"+name+".json")
				cfg := map[string]any{"metadata": map[string]any{"name": name}, "image": map[string]any{"image": containerdImage},
					"command": []string{"sleep", "3600"}, "log_path": name + ".log"}
				for k, v := range fields {
					cfg[k] = v
				}
				writeJSON(t, config, cfg)
				return c.crictl(t, "create", pod.id, config, pod.config)
			}
			if r := create("rro-rw", mount(map[string]any{"recursive_read_only": true, "readonly": false})); r.code == 0 {
				t.Errorf("crictl create of an rro mount with readonly false succeeded: %s", r.stdout)
			}
			// Bidirectional needs a shared host mount (containerd checks).
			if err := syscall.Mount(host, host, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
				t.Fatal(err)
			}
			defer syscall.Unmount(host, syscall.MNT_DETACH)
			if err := syscall.Mount("", host, "", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
				t.Fatal(err)
			}
			// containerd's CreateContainer only records it: the task (the
			// runtime's create) comes with StartContainer.
			r := create("bidi", mount(map[string]any{"readonly": false, "propagation": 2}))
			if r.code != 0 {
				t.Fatalf("crictl create with Bidirectional propagation: exit %d, %s", r.code, r.stderr)
			}
			bidi := strings.TrimSpace(string(r.stdout))
			r = c.crictl(t, "start", bidi)
			if r.code == 0 || !strings.Contains(string(r.stderr), "rshared") || !strings.Contains(string(r.stderr), "Bidirectional") || !strings.Contains(string(r.stderr), host) {
				t.Errorf("crictl start with Bidirectional propagation: exit %d, %s; want a refusal naming the mount, rshared and Bidirectional", r.code, r.stderr)
			}
			c.crictl(t, "rm", "-f", bidi)
			c.ok(t, "crictl", "rm", "-f", ro, rro)
		})

		t.Run("cri pod", func(t *testing.T) {
			t.Parallel()
			// The pod's total: 256 MiB and 1.5 CPUs, on top of the guest's own.
			pod := c.runPodWith(t, "ictd-pod", initosHandler, map[string]any{
				"resources": map[string]any{"memory_limit_in_bytes": 256 << 20, "cpu_quota": 150000, "cpu_period": 100000}})
			// kubelet passes masked paths (crictl none unless told); each
			// container a PID namespace of its own (NamespaceMode
			// CONTAINER: kubelet's default; the CRI's zero value is POD,
			// see "cri pod shared pid").
			// Their oom_score_adj, as kubelet gives a Burstable pod's
			// containers by their memory requests.
			ownPid := map[string]any{"pid": 1}
			a := c.startContainerWith(t, pod, "a", map[string]any{"security_context": map[string]any{"masked_paths": []string{"/proc/timer_list"}, "namespace_options": ownPid},
				"resources": map[string]any{"oom_score_adj": 700}},
				"sh", "-c", "echo hello-from-a; echo a > /tmp/who; while true; do sleep 1; done")
			b := c.startContainerWith(t, pod, "b", map[string]any{"security_context": map[string]any{"namespace_options": ownPid},
				"resources": map[string]any{"oom_score_adj": 300}},
				"sh", "-c", "echo b > /tmp/who; while true; do sleep 1; done")
			// One VM for the pod: the sandbox's; its members boot none.
			if vmms := vmmsOf(c.shimStateDir(criNamespace, pod.id)); len(vmms) != 1 {
				t.Errorf("%d VMMs run for the pod sandbox, want 1: %v", len(vmms), vmms)
			} else if want := fmt.Sprintf(" -smp 2 -m %d ", env.cfg.MemoryMiB+256); !strings.Contains(vmms[0], want) {
				t.Errorf("the pod's VM is not sized for its containers (want %q): %s", want, vmms[0])
			}
			for _, id := range []string{a, b} {
				if vmms := vmmsOf(c.shimStateDir(criNamespace, id)); len(vmms) != 0 {
					t.Errorf("pod member %s has a VMM of its own: %v", id, vmms)
				}
			}
			for id, who := range map[string]string{a: "a", b: "b"} {
				var out string
				poll(t, settleTimeout, "crictl exec into "+who, func() (bool, string) {
					r := c.crictl(t, "exec", id, "sh", "-c", "cat /tmp/who; echo $$; cat /proc/1/cmdline")
					out = string(r.stdout)
					return r.code == 0 && strings.HasPrefix(out, who+"\n"), fmt.Sprintf("exit %d: %s %s", r.code, r.stdout, r.stderr)
				})
				if !strings.Contains(out, "echo "+who+" > /tmp/who") {
					t.Errorf("container %s: PID 1 of its namespace is not its own process: %q", who, out)
				}
			}
			// A member's own /proc (its PID namespace's) is masked as the spec says.
			if r := c.crictl(t, "exec", a, "sh", "-c", "cat /proc/timer_list | wc -c"); r.code != 0 || strings.TrimSpace(string(r.stdout)) != "0" {
				t.Errorf("pod member's /proc/timer_list: exit %d, %q %s; want 0 bytes (masked)", r.code, r.stdout, r.stderr)
			}
			poll(t, settleTimeout, "crictl logs of a", func() (bool, string) {
				r := c.crictl(t, "logs", a)
				return strings.Contains(string(r.stdout), "hello-from-a"), fmt.Sprintf("exit %d: %s %s", r.code, r.stdout, r.stderr)
			})
			// The host's OOM killer weighs the pod's VM as its most
			// protected member asks (the lowest value), each member's
			// process in the guest as its own.
			vmDir := c.shimStateDir(criNamespace, pod.id)
			allEqual(t, "the pod's VM with members 700 and 300", hostOOMScores(t, 0, true, vmDir), 300)
			if r := c.crictl(t, "exec", a, "cat", "/proc/1/oom_score_adj"); strings.TrimSpace(string(r.stdout)) != "700" {
				t.Errorf("member a's process: oom_score_adj %q (exit %d, %s), want 700", r.stdout, r.code, r.stderr)
			}
			c.ok(t, "crictl", "stop", b)
			c.ok(t, "crictl", "rm", b)
			poll(t, settleTimeout, "the pod's VM weighed by a alone", func() (bool, string) {
				scores := hostOOMScores(t, 0, true, vmDir)
				for _, v := range scores {
					if v != 700 {
						return false, fmt.Sprint(scores)
					}
				}
				return true, ""
			})
			c.removePod(t, pod, a, b)
		})
	})
}

// terminal runs cmd in a pty (script(1)) after setup (e.g. stty) and
// returns what it printed.
func (c *containerd) terminal(t *testing.T, cmd, setup string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), containerdCmdTimeout)
	defer cancel()
	line := setup + "; " + strings.Join(c.toolArgsLine("nerdctl"), " ") + " " + strings.TrimPrefix(cmd, "nerdctl ")
	sc := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	sc.Env = c.toolEnv
	sc.Dir = c.dir
	out, err := sc.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return strings.ReplaceAll(string(out), "\r", "")
}

// toolArgsLine is the command line of tool with this containerd's flags.
func (c *containerd) toolArgsLine(tool string) []string {
	return append([]string{tool}, c.toolArgs(tool, nil)...)
}

// killVMM sends SIGKILL to the one VMM whose command line names dir.
func killVMM(t testing.TB, dir string) {
	t.Helper()
	killOnly(t, "VMM of "+dir, vmmsOf(dir))
}

// killVirtiofsd sends SIGKILL to the virtiofsd serving the root share of
// the VM whose state dir is dir (Debian's virtiofsd runs as a parent and
// its sandboxed child: both); false when there is none (9p).
func killVirtiofsd(t testing.TB, dir string) bool {
	t.Helper()
	var found bool
	for _, proc := range processesOf(dir, "") {
		if !strings.Contains(proc, "virtiofsd") || !strings.Contains(proc, "virtiofs0.sock") {
			continue
		}
		found = true
		var pid int
		fmt.Sscanf(proc, "%d", &pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("killing %s: %v", proc, err)
		}
	}
	return found
}

// killOnly sends SIGKILL to the one process of procs (processesOf's
// lines), failing unless there is exactly one.
func killOnly(t testing.TB, what string, procs []string) {
	t.Helper()
	if len(procs) != 1 {
		t.Fatalf("%s: found %v", what, procs)
	}
	var pid int
	fmt.Sscanf(procs[0], "%d", &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s (pid %d): %v", what, pid, err)
	}
}

// vmmsOf lists the VMM processes whose command line names dir.
func vmmsOf(dir string) []string {
	var out []string
	for _, p := range processesOf(dir, "") {
		if strings.Contains(p, "qemu-system") || strings.Contains(p, "cloud-hypervisor") {
			out = append(out, p)
		}
	}
	return out
}
