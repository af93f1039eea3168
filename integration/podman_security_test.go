package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// securityScript prints what the process's security settings are: its
// capability sets, no_new_privs, seccomp mode and oom_score_adj, then whether it may make
// a block device node (the VM's disk is 254:0) and open a character device
// the device cgroup denies (the serial console, 4:64), then its namespaces as it
// sees them: whether it is PID 1, how many processes named /init (the
// guest agent) it sees, and whether its hostname is the one the engine
// gave it.
const securityScript = `grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; ` +
	`cat /proc/self/oom_score_adj; mkdir -p /tmp; ` +
	`if mknod /tmp/blk-$$ b 254 0 2>/dev/null; then echo mknod-allowed; rm -f /tmp/blk-$$; else echo mknod-refused; fi; ` +
	`if mknod /tmp/chr-$$ c 4 64 2>/dev/null; then if (: > /tmp/chr-$$) 2>/dev/null; then echo open-allowed; else echo open-refused; fi; rm -f /tmp/chr-$$; fi; ` +
	`if [ $$ = 1 ]; then echo pid-1; else echo not-pid-1; fi; ` +
	`echo "agent-visible=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep -cx '/ini[t]')"; ` +
	`if [ "$(hostname)" = "$(cat /etc/hostname)" ]; then echo hostname-ok; else echo "hostname $(hostname) vs $(cat /etc/hostname)"; fi`

// TestPodmanSecurity runs the same podman commands under runc and under
// initos-runtime and compares what the container's process reports about
// its capabilities, no_new_privs and oom_score_adj: they must be equal.
func TestPodmanSecurity(t *testing.T) {
	runtimes, pods := bothRuntimes(t)
	for _, tc := range []struct {
		name string
		args []string // podman run's options
		// exec: run a container with args and podman exec the script in it.
		exec       bool
		wantMknod  string // "" when either answer is fine
		wantCapEff string // "" when not checked beyond equality
	}{
		{name: "default"},
		{name: "cap-drop-all", args: []string{"--cap-drop=all"},
			wantMknod: "mknod-refused", wantCapEff: "0000000000000000"},
		{name: "cap-drop-all-add-net-admin", args: []string{"--cap-drop=all", "--cap-add=NET_ADMIN"},
			wantMknod: "mknod-refused", wantCapEff: "0000000000001000"},
		{name: "no-new-privileges", args: []string{"--security-opt", "no-new-privileges"}},
		{name: "user-1000", args: []string{"--user", "1000:1000"},
			wantMknod: "mknod-refused", wantCapEff: "0000000000000000"},
		{name: "oom-score-adj", args: []string{"--oom-score-adj", "500"}},
		{name: "seccomp-unconfined", args: []string{"--security-opt", "seccomp=unconfined"}},
		{name: "exec-cap-drop-all", args: []string{"--cap-drop=all"}, exec: true,
			wantMknod: "mknod-refused", wantCapEff: "0000000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			outs := make(map[string]string, len(runtimes))
			for _, rt := range runtimes {
				t.Run(rt, func(t *testing.T) {
					out := securityOutput(t, pods[rt], "initos-pm-sec-"+tc.name, tc.args, tc.exec)
					outs[rt] = out
					if tc.wantMknod != "" && !hasLine(out, tc.wantMknod) {
						t.Errorf("want %s, got:\n%s", tc.wantMknod, out)
					}
					if tc.wantCapEff != "" && !hasLine(out, "CapEff:\t"+tc.wantCapEff) {
						t.Errorf("want CapEff %s, got:\n%s", tc.wantCapEff, out)
					}
					// podman's default seccomp profile is a filter (mode 2).
					if want := map[bool]string{false: "Seccomp:\t2", true: "Seccomp:\t0"}[tc.name == "seccomp-unconfined"]; !hasLine(out, want) {
						t.Errorf("want %s, got:\n%s", want, out)
					}
					// The device cgroup (the engines' deny-all plus runc's
					// defaults) refuses the serial console.
					if hasLine(out, "open-allowed") {
						t.Errorf("the container opened the serial console (4:64):\n%s", out)
					}
					// The container's processes have a PID namespace of
					// their own: the first is PID 1, the agent is out of sight.
					if want := map[bool]string{false: "pid-1", true: "not-pid-1"}[tc.exec]; !hasLine(out, want) || !hasLine(out, "agent-visible=0") || !hasLine(out, "hostname-ok") {
						t.Errorf("want %s, agent-visible=0 and hostname-ok, got:\n%s", want, out)
					}
				})
			}
			if t.Failed() {
				return
			}
			if outs["runc"] != outs["initos"] {
				t.Errorf("runc and initos-runtime differ\nrunc:\n%s\ninitos-runtime:\n%s", outs["runc"], outs["initos"])
			} else {
				t.Logf("runc and initos-runtime:\n%s", outs["runc"])
			}
		})
	}
}

// securityOutput is securityScript's output in a container run with args,
// or, with exec, in a `podman exec` of a running container run with args.
func securityOutput(t *testing.T, p *podman, name string, args []string, exec bool) string {
	t.Helper()
	if !exec {
		p.removeLater(t, name)
		run := append([]string{"run", "--rm", "--name", name, "--network", "none"}, args...)
		run = append(run, podmanImage, "sh", "-c", securityScript)
		r := p.run(t, nil, run...)
		if r.code != 0 {
			t.Fatalf("podman %s: exit %d, stdout %q, stderr %q", strings.Join(run, " "), r.code, r.stdout, r.stderr)
		}
		return string(r.stdout)
	}
	p.removeLater(t, name)
	run := append([]string{"run", "-d", "--name", name, "--network", "none"}, args...)
	p.ok(t, append(run, podmanImage, "sleep", "3600")...)
	r := p.run(t, nil, "exec", name, "sh", "-c", securityScript)
	if r.code != 0 {
		t.Fatalf("podman exec %s: exit %d, stdout %q, stderr %q", name, r.code, r.stdout, r.stderr)
	}
	if got := p.inspect(t, name, "{{.State.Status}}"); got != "running" {
		t.Errorf("container %s is %s after the exec, want running", name, got)
	}
	p.ok(t, "rm", "--force", "--time", "0", name)
	return string(r.stdout)
}

// TestPodmanChrootEscape runs testdata/chrootescape (the classic escape
// from a chroot, with the default capabilities, which hold
// CAP_SYS_CHROOT) under runc and under initos-runtime: the container's root
// must be a pivot_root of a mount namespace of its own, out of which the
// agent's tree (the initramfs, the VM's disks, the other pod members'
// roots) cannot be reached.
func TestPodmanChrootEscape(t *testing.T) {
	runtimes, pods := bothRuntimes(t)
	bin := filepath.Join(t.TempDir(), "chrootescape")
	build := exec.Command("go", "build", "-o", bin, "./testdata/chrootescape")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the escape program: %v\n%s", err, out)
	}
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			t.Parallel()
			p := pods[rt]
			name := "initos-pm-escape-" + rt
			p.removeLater(t, name)
			r := p.run(t, nil, "run", "--rm", "--name", name, "--network", "none", "-v", bin+":/chrootescape:ro", podmanImage, "/chrootescape")
			if r.code != 0 || string(r.stdout) != "contained\n" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q", r.code, r.stdout, r.stderr, "contained\n")
			}
		})
	}
}
