package integration

import (
	"strconv"
	"strings"
	"testing"
)

// TestModulesOnDemand: a privileged container's `ip link add br0 type
// bridge` makes the guest kernel ask for rtnl-link-bridge, which no module
// group holds; the agent, as the kernel's modprobe, loads bridge and what
// it needs (stp, llc) from the kernel's modules share, as modprobe would
// on a host. Without it the kernel finds no modprobe and ip fails
// ("Operation not supported"). A second bridge finds the module loaded,
// and a name no module answers fails as on a host. The same in a VM
// restored from a template (the share is a device of the snapshot,
// mounted after the restore).
func TestModulesOnDemand(t *testing.T) {
	needVMs(t)
	t.Run("boot", func(t *testing.T) { modulesOnDemand(t, env.config, "modules-on-demand") })
	t.Run("clone", func(t *testing.T) { modulesOnDemand(t, templatesConfig(t), "modules-on-demand-clone") })
}

func modulesOnDemand(t *testing.T, config, id string) {
	// /proc/uptime around each step: the guest's own clock, in 10 ms.
	script := `up() { cut -d' ' -f1 /proc/uptime; }
t0=$(up); ip link add br0 type bridge || exit 10; t1=$(up)
echo "first $t0 $t1"
ip link add br1 type bridge || exit 11; t2=$(up)
echo "second $t1 $t2"
ls -d /sys/class/net/br0/bridge /sys/class/net/br1/bridge
grep -oE '^(bridge|stp|llc) ' /proc/modules | sort | tr -d ' ' | tr '\n' ' '; echo
ip link add x0 type no-such-kind 2>/dev/null && echo "no-such-kind added"
echo done`
	s := busyboxSpec(t, "sh", "-c", script)
	r := runtimeCmdWith(t, config, nil, "run", "--timings", "--bundle", writeBundle(t, s), id)
	defer assertNothingLeft(t, id)
	out := string(r.stdout)
	t.Logf("stdout:\n%s\nstderr:\n%s", out, r.stderr)
	if r.code != 0 {
		t.Fatalf("exit status %d (10: the first bridge failed, 11: the second)", r.code)
	}
	if strings.HasSuffix(id, "-clone") && !strings.Contains(string(r.stderr), "restored from a template") {
		t.Errorf("not a clone: %s", r.stderr)
	}
	for _, want := range []string{
		"/sys/class/net/br0/bridge\n/sys/class/net/br1/bridge\n",
		"bridge llc stp \n",
		"done\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if strings.Contains(out, "no-such-kind added") {
		t.Error("a link of a kind no module provides was added")
	}
	for _, step := range []string{"first", "second"} {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == step {
				a, _ := strconv.ParseFloat(f[1], 64)
				b, _ := strconv.ParseFloat(f[2], 64)
				t.Logf("%s bridge: %.2f s (guest clock)", step, b-a)
			}
		}
	}
}
