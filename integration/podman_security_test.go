package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// securityScript prints what the process's security settings are: its
// identity, capability sets, no_new_privs, seccomp mode, oom_score_adj, the
// rlimits the engines set and its cgroup's pids.max (cgroup v2's, or
// v1's pids hierarchy on a host like ours where runc has no v2); then whether seccomp
// lets it mkdir, whether it may make a block device node (the VM's disk is
// 254:0) and open a character device the device cgroup denies (the serial
// console, 4:64); whether a --device node (/dev/probe) is there and what its
// device rules let it do; the names in its /dev; then its namespaces as it
// sees them: whether it is PID 1, how many processes named /init (the guest
// agent) it sees, and whether its hostname is the one the engine gave it.
const securityScript = `grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; ` +
	`cat /proc/self/oom_score_adj; grep -E '^Max (open files|processes) ' /proc/self/limits; ` +
	`echo "pids.max=$(cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null)"; ` +
	`if e=$(mkdir /tmp/seccomp-probe 2>&1); then echo mkdir-allowed; rmdir /tmp/seccomp-probe; else echo "mkdir-refused: ${e##*: }"; fi; ` +
	`if mknod /tmp/blk-$$ b 254 0 2>/dev/null; then echo mknod-allowed; rm -f /tmp/blk-$$; else echo mknod-refused; fi; ` +
	`if mknod /tmp/chr-$$ c 4 64 2>/dev/null; then if (: > /tmp/chr-$$) 2>/dev/null; then echo open-allowed; else echo open-refused; fi; rm -f /tmp/chr-$$; fi; ` +
	`if [ -e /dev/probe ]; then ls -l /dev/probe | awk '{print "probe", $1, $5, $6}'; ` +
	`if head -c 1 /dev/probe >/dev/null 2>&1; then echo probe-read-ok; else echo probe-read-refused; fi; ` +
	`if (: > /dev/probe) 2>/dev/null; then echo probe-write-ok; else echo probe-write-refused; fi; fi; ` +
	`echo "dev: $(ls -A /dev | tr '\n' ' ')"; ` +
	`if [ $$ = 1 ]; then echo pid-1; else echo not-pid-1; fi; ` +
	`echo "agent-visible=$(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep -cx '/ini[t]')"; ` +
	`if [ "$(hostname)" = "$(cat /etc/hostname)" ]; then echo hostname-ok; else echo "hostname $(hostname) vs $(cat /etc/hostname)"; fi`

// mkdirDenyProfile is a seccomp profile (podman's --security-opt
// seccomp=FILE) that allows every system call but mkdir and mkdirat, which
// fail with EPERM.
const mkdirDenyProfile = `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],` +
	`"syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}`

// TestPodmanSecurity runs the same podman commands under runc and under
// initos-runtime and compares what the container's process reports about
// its security settings (securityScript): they must be equal, and some lines
// must read as the options ask.
func TestPodmanSecurity(t *testing.T) {
	runtimes, pods := bothRuntimes(t)
	profile := filepath.Join(t.TempDir(), "deny-mkdir.json")
	if err := os.WriteFile(profile, []byte(mkdirDenyProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string // podman run's options
		// exec: run a container with args and podman exec the script in it.
		exec bool
		// want: lines the script must print (beyond runc's and
		// initos-runtime's outputs being equal).
		want []string
		// privileged: every device is allowed (the console check does
		// not apply) and there is no seccomp filter.
		privileged bool
	}{
		{name: "default", want: []string{"mknod-allowed", "mkdir-allowed"}},
		{name: "cap-drop-all", args: []string{"--cap-drop=all"},
			want: []string{"mknod-refused", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"}},
		{name: "cap-drop-all-add-net-admin", args: []string{"--cap-drop=all", "--cap-add=NET_ADMIN"},
			want: []string{"mknod-refused", "CapEff:\t0000000000001000", "CapBnd:\t0000000000001000"}},
		{name: "privileged", args: []string{"--privileged"}, privileged: true,
			want: []string{"mknod-allowed", "Seccomp:\t0"}},
		{name: "no-new-privileges", args: []string{"--security-opt", "no-new-privileges"},
			want: []string{"NoNewPrivs:\t1"}},
		{name: "seccomp-unconfined", args: []string{"--security-opt", "seccomp=unconfined"},
			want: []string{"Seccomp:\t0"}},
		{name: "seccomp-deny-mkdir", args: []string{"--security-opt", "seccomp=" + profile},
			want: []string{"Seccomp:\t2", "mkdir-refused: Operation not permitted"}},
		{name: "sysctl", args: []string{"--sysctl", "net.ipv4.ip_unprivileged_port_start=0"}},
		{name: "device", args: []string{"--device", "/dev/zero:/dev/probe"},
			want: []string{"probe crw-rw-rw- 1, 5", "probe-read-ok", "probe-write-ok"}},
		// A device rule that lets the container make the serial console
		// and read it, not write it.
		{name: "device-cgroup-rule", args: []string{"--device-cgroup-rule", "c 4:64 rm"},
			want: []string{"open-refused"}},
		{name: "pids-limit", args: []string{"--pids-limit", "50"}, want: []string{"pids.max=50"}},
		{name: "ulimit", args: []string{"--ulimit", "nofile=1000:2000", "--ulimit", "nproc=300:400"},
			want: []string{"Max open files            1000                 2000                 files     ",
				"Max processes             300                  400                  processes "}},
		{name: "oom-score-adj", args: []string{"--oom-score-adj", "500"}, want: []string{"500"}},
		{name: "user-1000-group-add-5", args: []string{"--user", "1000:1000", "--group-add", "5"},
			want: []string{"mknod-refused", "CapEff:\t0000000000000000", "Uid:\t1000\t1000\t1000\t1000", "Groups:\t5 1000 "}},
		{name: "exec-cap-drop-all", args: []string{"--cap-drop=all"}, exec: true,
			want: []string{"mknod-refused", "CapEff:\t0000000000000000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			outs := make(map[string]string, len(runtimes))
			for _, rt := range runtimes {
				t.Run(rt, func(t *testing.T) {
					out := securityOutput(t, pods[rt], "initos-pm-sec-"+tc.name, tc.args, tc.exec)
					outs[rt] = out
					for _, w := range tc.want {
						if !hasLine(out, w) {
							t.Errorf("want the line %q, got:\n%s", w, out)
						}
					}
					// podman's default seccomp profile is a filter (mode 2).
					if !tc.privileged && tc.name != "seccomp-unconfined" && !hasLine(out, "Seccomp:\t2") {
						t.Errorf("want Seccomp: 2, got:\n%s", out)
					}
					// The device cgroup (the engines' deny-all plus runc's
					// defaults) refuses the serial console.
					if !tc.privileged && hasLine(out, "open-allowed") {
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

// TestPodmanSeccomp32 runs a 32-bit (i386) program under podman's default
// seccomp profile and under one that denies mkdir, under runc and under
// initos-runtime: the profiles list SCMP_ARCH_X86, so the filter must apply
// their rules to i386's system calls (by i386's numbers), not its default
// action (under podman's, ERRNO: the program would not even start).
func TestPodmanSeccomp32(t *testing.T) {
	runtimes, pods := bothRuntimes(t)
	bin := filepath.Join(t.TempDir(), "mkdir32")
	build := exec.Command("go", "build", "-o", bin, "./testdata/mkdir32")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=386")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the i386 program: %v\n%s", err, out)
	}
	// runc runs the program on this host's kernel, which may not execute
	// i386 programs at all (IA32 emulation off, or a platform without
	// 32-bit mode, as the PVM guests some of our machines are): execve
	// says ENOEXEC there. initos-runtime runs it on the guest's kernel.
	hostErr := exec.Command(bin).Run()
	hostRuns386 := !errors.Is(hostErr, syscall.ENOEXEC)
	profile := filepath.Join(t.TempDir(), "deny-mkdir.json")
	if err := os.WriteFile(profile, []byte(mkdirDenyProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "default-profile", want: "mkdir: ok\n386\n"},
		{name: "deny-mkdir", args: []string{"--security-opt", "seccomp=" + profile}, want: "mkdir: operation not permitted\n386\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, rt := range runtimes {
				t.Run(rt, func(t *testing.T) {
					if rt == "runc" && !hostRuns386 {
						t.Skipf("this host's kernel cannot execute i386 programs (%v): runc would run it there; initos-runtime runs it on the guest's kernel", hostErr)
					}
					p := pods[rt]
					name := "initos-pm-sec32-" + tc.name
					p.removeLater(t, name)
					args := append([]string{"run", "--rm", "--name", name, "--network", "none", "-v", bin + ":/mkdir32:ro"}, tc.args...)
					args = append(args, podmanImage, "/mkdir32")
					r := p.run(t, nil, args...)
					if r.code != 0 || string(r.stdout) != tc.want {
						t.Errorf("podman %s: exit %d, stdout %q, stderr %q; want 0, %q", strings.Join(args, " "), r.code, r.stdout, r.stderr, tc.want)
					}
				})
			}
		})
	}
}
