package integration

import (
	"strconv"
	"strings"
	"testing"
)

// rootWriteProbe says whether the container may write to its root
// filesystem, and if not, why: it creates a file in /tmp, which is on the
// root filesystem (neither nerdctl nor CRI mounts anything there) and open
// to every uid (mode 1777), so that only a read-only root refuses it
// (EROFS). / itself would not do: a non-root user may not write there even
// when the root filesystem is read-write.
const rootWriteProbe = `if e=$(touch /tmp/rootfs-probe 2>&1); then echo root-writable; rm -f /tmp/rootfs-probe; else echo "root-write-refused: ${e##*: }"; fi`

// containerdSecurityScript is securityScript followed by rootWriteProbe.
const containerdSecurityScript = securityScript + "; " + rootWriteProbe

// inheritedLine reports whether line of securityScript's output shows a
// setting that neither nerdctl nor CRI (without resources) puts in the
// spec and that the process then inherits from where it starts: its
// oom_score_adj. Under runc that is containerd-shim-runc-v2's own,
// containerd's plus 1 (the shim's AdjustOOMScore); under initos-runtime the
// process starts in the guest, whose OOM killer weighs it among the VM's
// processes only (oom_score_adj 0). The rlimits the spec leaves out are
// compared: initos-runtime gives the guest process those of the runtime
// (withInheritedRlimits), as runc's process inherits them.
func inheritedLine(line string) bool {
	// oom_score_adj is the one line of securityScript that is a bare integer.
	_, err := strconv.Atoi(line)
	return err == nil
}

// splitInherited splits securityScript's output into the lines to compare
// and the inherited ones (inheritedLine).
func splitInherited(out string) (compared, inherited string) {
	var c, i strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		if inheritedLine(strings.TrimSuffix(l, "\n")) {
			i.WriteString(l)
		} else {
			c.WriteString(l)
		}
	}
	return c.String(), i.String()
}

// TestContainerdSecurity runs the same security probe
// (containerdSecurityScript) under runc and under initos-runtime through
// one private containerd, by nerdctl with security options and by CRI with
// a container's security context, and compares what the container's
// process reports: runc's and initos-runtime's outputs must be equal (but
// for the inherited lines, inheritedLine), and some lines must read as the
// options ask.
func TestContainerdSecurity(t *testing.T) {
	c := newContainerd(t)
	runtimes := []struct{ name, typ, handler string }{
		{"runc", runcRuntimeType, "runc"},
		{"initos", initosRuntimeType, initosHandler},
	}

	// compare fails the test unless both runtimes printed the same (but
	// for the inherited lines), with both outputs, and logs the common
	// output if nothing failed. It compares even after a runtime's own
	// checks failed, so that its error shows what runc printed; a runtime
	// that printed nothing has said why already.
	compare := func(t *testing.T, outs map[string]string) {
		t.Helper()
		if len(outs) < len(runtimes) {
			return
		}
		runc, runcInherited := splitInherited(outs["runc"])
		initos, initosInherited := splitInherited(outs["initos"])
		if runc != initos {
			t.Errorf("runc and initos-runtime differ\nrunc:\n%s\ninitos-runtime:\n%s", outs["runc"], outs["initos"])
		} else if !t.Failed() {
			t.Logf("runc and initos-runtime:\n%s", runc)
			t.Logf("inherited, not compared:\nrunc:\n%sinitos-runtime:\n%s", runcInherited, initosInherited)
		}
	}

	// checkCommon checks what every case must print: the engine's default
	// seccomp filter (mode 2) unless the case lifts it; a device cgroup
	// that refuses the serial console (4:64); a PID namespace of the
	// container's own, of which its first process is PID 1 and out of which
	// the guest agent is not seen; the hostname the engine gave it, which
	// its /etc/hostname (a bind mount of the engine's file) holds and the
	// container's user may read.
	checkCommon := func(t *testing.T, out string, seccomp bool) {
		t.Helper()
		if seccomp && !hasLine(out, "Seccomp:\t2") {
			t.Errorf("want Seccomp: 2 (the default filter), got:\n%s", out)
		}
		if hasLine(out, "open-allowed") {
			t.Errorf("the container opened the serial console (4:64):\n%s", out)
		}
		if !hasLine(out, "pid-1") || !hasLine(out, "agent-visible=0") {
			t.Errorf("want pid-1 and agent-visible=0 (a PID namespace of its own), got:\n%s", out)
		}
		if !hasLine(out, "hostname-ok") {
			t.Errorf("want hostname-ok: the hostname and /etc/hostname differ, or /etc/hostname cannot be read; got:\n%s", out)
		}
	}

	for _, tc := range []struct {
		name string
		args []string // nerdctl run's options
		// want: lines the probe must print (beyond runc's and
		// initos-runtime's outputs being equal).
		want []string
		// unconfined: the case lifts the default seccomp filter.
		unconfined bool
	}{
		// No capability in any set: mknod (CAP_MKNOD) is refused.
		{name: "cap-drop-all", args: []string{"--cap-drop=ALL"},
			want: []string{"mknod-refused", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"}},
		// CAP_NET_ADMIN (bit 12) and nothing else.
		{name: "cap-drop-all-add-net-admin", args: []string{"--cap-drop=ALL", "--cap-add=NET_ADMIN"},
			want: []string{"mknod-refused", "CapEff:\t0000000000001000", "CapBnd:\t0000000000001000"}},
		{name: "no-new-privileges", args: []string{"--security-opt", "no-new-privileges"},
			want: []string{"NoNewPrivs:\t1"}},
		// A non-root user: every uid and gid is 1000, the supplementary
		// groups are the added one and its own, and it has no effective
		// capabilities (mknod is refused).
		{name: "user-1000-group-add-5", args: []string{"--user", "1000:1000", "--group-add", "5"},
			want: []string{"mknod-refused", "CapEff:\t0000000000000000", "Uid:\t1000\t1000\t1000\t1000",
				"Gid:\t1000\t1000\t1000\t1000", "Groups:\t5 1000 "}},
		{name: "seccomp-unconfined", args: []string{"--security-opt", "seccomp=unconfined"}, unconfined: true,
			want: []string{"Seccomp:\t0"}},
	} {
		t.Run("nerdctl-"+tc.name, func(t *testing.T) {
			t.Parallel()
			outs := make(map[string]string, len(runtimes))
			for _, rt := range runtimes {
				t.Run(rt.name, func(t *testing.T) {
					args := append([]string{"run", "--rm", "--network", "none", "--runtime", rt.typ}, tc.args...)
					args = append(args, containerdImage, "sh", "-c", containerdSecurityScript)
					r := c.nerdctl(t, args...)
					if r.code != 0 {
						t.Fatalf("nerdctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
					}
					out := string(r.stdout)
					outs[rt.name] = out
					for _, w := range tc.want {
						if !hasLine(out, w) {
							t.Errorf("want the line %q, got:\n%s", w, out)
						}
					}
					checkCommon(t, out, !tc.unconfined)
					// nerdctl's root filesystem is read-write, for user
					// 1000 too: the probe that says read-only for CRI
					// below can tell the two apart.
					if !hasLine(out, "root-writable") {
						t.Errorf("want root-writable, got:\n%s", out)
					}
				})
			}
			compare(t, outs)
		})
	}

	// CRI: a container's security context as kubelet passes it, in a pod
	// of each runtime's handler (initos: a member of the pod's VM). Its PID
	// namespace is its own (namespace_options pid CONTAINER, kubelet's
	// default without shareProcessNamespace; crictl's default, POD, shows
	// the pod's pause process as PID 1 under both: see
	// docs/architecture.md, Pods, and "cri pod shared pid").
	t.Run("cri", func(t *testing.T) {
		t.Parallel()
		linux := map[string]any{"security_context": map[string]any{
			"capabilities":      map[string]any{"drop_capabilities": []string{"ALL"}},
			"run_as_user":       map[string]any{"value": 1000},
			"readonly_rootfs":   true,
			"seccomp":           map[string]any{"profile_type": 0}, // RuntimeDefault
			"namespace_options": map[string]any{"pid": 1},          // CONTAINER
		}}
		outs := make(map[string]string, len(runtimes))
		for _, rt := range runtimes {
			t.Run(rt.name, func(t *testing.T) {
				pod := c.runPod(t, "ictd-sec-"+rt.name, rt.handler)
				id := c.startContainerWith(t, pod, "probe", linux, "sh", "-c", containerdSecurityScript)
				if code := c.waitExited(t, id, settleTimeout); code != 0 {
					t.Errorf("the probe exited %d, want 0", code)
				}
				r := c.crictl(t, "logs", id)
				if r.code != 0 {
					t.Fatalf("crictl logs %s: exit %d\nstdout: %s\nstderr: %s", id, r.code, r.stdout, r.stderr)
				}
				out := string(r.stdout)
				outs[rt.name] = out
				for _, w := range []string{
					// drop_capabilities ALL empties every set: mknod
					// (CAP_MKNOD) is refused.
					"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "mknod-refused",
					// run_as_user 1000.
					"Uid:\t1000\t1000\t1000\t1000",
					// readonly_rootfs: the write is refused with EROFS, not
					// for want of permission.
					"root-write-refused: Read-only file system",
				} {
					if !hasLine(out, w) {
						t.Errorf("want the line %q, got:\n%s", w, out)
					}
				}
				// seccomp RuntimeDefault: containerd's default filter.
				checkCommon(t, out, true)
				c.ok(t, "crictl", "stopp", pod.id)
				c.ok(t, "crictl", "rmp", pod.id)
			})
		}
		compare(t, outs)
	})
}
