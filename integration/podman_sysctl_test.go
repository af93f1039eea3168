package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPodmanSysctl runs `podman run --sysctl` under runc and under
// initos-runtime: a namespaced sysctl reads back the value asked for on
// both, and one that is not namespaced (vm.swappiness) is refused by both.
func TestPodmanSysctl(t *testing.T) {
	runtimes, pods := bothRuntimes(t)
	for _, tc := range []struct {
		name   string
		sysctl string // name=value
	}{
		{name: "net", sysctl: "net.ipv4.ip_unprivileged_port_start=0"},
		{name: "ipc", sysctl: "kernel.shmmax=68719476736"},
		{name: "mqueue", sysctl: "fs.mqueue.msg_max=20"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, value, _ := strings.Cut(tc.sysctl, "=")
			file := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
			outs := make(map[string]string, len(runtimes))
			for _, rt := range runtimes {
				t.Run(rt, func(t *testing.T) {
					p := pods[rt]
					ctr := "initos-pm-sysctl-" + tc.name
					p.removeLater(t, ctr)
					args := []string{"run", "--rm", "--name", ctr, "--network", "none", "--sysctl", tc.sysctl,
						podmanImage, "cat", file}
					r := p.run(t, nil, args...)
					if r.code != 0 {
						t.Fatalf("podman %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), r.code, r.stdout, r.stderr)
					}
					outs[rt] = strings.TrimSpace(string(r.stdout))
					if outs[rt] != value {
						t.Errorf("%s reads %q, want %q", file, outs[rt], value)
					}
				})
			}
			if !t.Failed() && outs["runc"] != outs["initos"] {
				t.Errorf("runc reads %q, initos-runtime %q", outs["runc"], outs["initos"])
			}
		})
	}

	// vm.swappiness is the VM's own under initos-runtime, but runc refuses
	// it, and so does initos-runtime: podman 4.3 itself refuses it before
	// any runtime runs, so the runtimes are also run on a bundle that asks
	// for it.
	t.Run("not-namespaced", func(t *testing.T) {
		t.Parallel()
		for _, rt := range runtimes {
			t.Run(rt, func(t *testing.T) {
				p := pods[rt]
				ctr := "initos-pm-sysctl-swappiness"
				p.removeLater(t, ctr)
				r := p.run(t, nil, "run", "--rm", "--name", ctr, "--network", "none", "--sysctl", "vm.swappiness=10",
					podmanImage, "cat", "/proc/sys/vm/swappiness")
				if r.code == 0 {
					t.Fatalf("podman run --sysctl vm.swappiness=10: exit 0, stdout %q; want a refusal", r.stdout)
				}
				if !strings.Contains(string(r.stderr), "vm.swappiness") {
					t.Errorf("podman run --sysctl vm.swappiness=10: exit %d, stderr %q does not name the sysctl", r.code, r.stderr)
				}
				t.Logf("podman run --sysctl vm.swappiness=10: exit %d, stderr %q", r.code, r.stderr)
			})
		}
	})
	t.Run("not-namespaced-bundle", func(t *testing.T) {
		t.Parallel()
		s := busyboxSpec(t, "cat", "/proc/sys/vm/swappiness")
		s.Linux.Sysctl = map[string]string{"vm.swappiness": "10"}
		dir := writeBundle(t, s)
		// runc logs the error with logrus, which escapes its quotes.
		const want = `sysctl \"vm.swappiness\" is not in a separate kernel namespace`

		runc := exec.Command("runc", "--root", t.TempDir(), "run", "--bundle", dir, "initos-sysctl-runc")
		out, err := runc.CombinedOutput()
		if err == nil {
			t.Errorf("runc run: no error, output %q; want a refusal", out)
		} else if !strings.Contains(string(out), want) {
			t.Errorf("runc run: %v, output %q; want %q", err, out, want)
		}
		t.Logf("runc: %v: %s", err, out)

		r := runtimeCmd(t, nil, "run", "--bundle", dir, "initos-sysctl-swappiness")
		const wantInitos = `sysctl "vm.swappiness" is not in a separate kernel namespace`
		if r.code == 0 || !strings.Contains(string(r.stderr), wantInitos) {
			t.Errorf("initos-runtime run: exit %d, stderr %q; want %q", r.code, r.stderr, wantInitos)
		}
		t.Logf("initos-runtime: exit %d: %s", r.code, r.stderr)
		assertNothingLeft(t, "initos-sysctl-swappiness")
	})
}
