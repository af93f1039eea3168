package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// TestBridgeMode runs the seed's bridge mode inside a network namespace of
// the test's own: `network setup` makes the bridge, dnsmasq serves the
// runtime's hosts file on the bridge address, two VMs ping each other by
// name, ten VMs created at once get ten distinct addresses, and after
// delete no tap, lease or hosts entry remains.
func TestBridgeMode(t *testing.T) {
	needVMs(t)
	requirePrograms(t, deb("dnsmasq-base", "dnsmasq"), deb("iproute2", "ip"))
	t.Parallel()
	bn := newBridgeNet(t, env.config, env.cfg.DataDir)
	rtNS, inNS, hosts := bn.rt, bn.in, bn.hosts

	bundle := writeBundle(t, busyboxSpec(t, "sh", "-c", "exec sleep 3600"))
	ids := []string{"br-a", "br-b"}
	for i := 0; i < 10; i++ {
		ids = append(ids, fmt.Sprintf("br-many-%d", i))
	}
	t.Cleanup(func() {
		for _, id := range ids {
			rtNS("delete", "--force", id)
		}
	})
	for _, id := range ids[:2] {
		if out, err := rtNS("run", "--detach", "--bundle", bundle, id); err != nil {
			t.Fatalf("run -d %s: %v: %s", id, err, out)
		}
	}
	bn.waitPing(t, "br-a", "br-b")

	// Ten at once.
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i, id := range ids[2:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := rtNS("create", "--bundle", bundle, id); err != nil {
				errs[i] = fmt.Errorf("create %s: %v: %s", id, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(hosts)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if other, dup := seen[f[0]]; dup {
			t.Errorf("%s and %s share %s", other, f[1], f[0])
		}
		seen[f[0]] = f[1]
	}
	if len(seen) != len(ids) {
		t.Errorf("hosts file lists %d containers, want %d:\n%s", len(seen), len(ids), b)
	}

	for _, id := range ids {
		if out, err := rtNS("delete", "--force", id); err != nil {
			t.Errorf("delete -f %s: %v: %s", id, err, out)
		}
	}
	if b, _ := os.ReadFile(hosts); strings.TrimSpace(string(b)) != "" {
		t.Errorf("hosts entries left: %q", b)
	}
	leases, _ := filepath.Glob(filepath.Join(env.cfg.DataDir, "leases", "10.*"))
	if len(leases) > 0 {
		t.Errorf("leases left: %v", leases)
	}
	if out, _ := inNS("ip", "-br", "link").CombinedOutput(); strings.Contains(string(out), "itap") {
		t.Errorf("taps left:\n%s", out)
	}
	for _, id := range ids {
		assertNothingLeft(t, id)
	}
}

// bridgeNet is the seed's bridge in a network namespace of a test's own,
// with dnsmasq serving the runtime's hosts file on the bridge's address.
type bridgeNet struct {
	ns     string
	root   string // the runtime's --root
	config string
	hosts  string
	dns    *exec.Cmd
	dnsLog *os.File
}

// newBridgeNet makes the namespace, runs `network setup` in it with
// config (whose data dir is dataDir) and starts dnsmasq; all is undone at
// the test's end.
func newBridgeNet(t *testing.T, config, dataDir string) *bridgeNet {
	t.Helper()
	bn := &bridgeNet{ns: fmt.Sprintf("initos-it-%d", rand.Uint32()), root: t.TempDir(), config: config,
		hosts: filepath.Join(dataDir, "dns", "hosts")}
	if out, err := exec.Command("ip", "netns", "add", bn.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", bn.ns).Run() })
	if out, err := bn.in("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	out, err := bn.rt("network", "setup")
	if err != nil || !strings.Contains(out, "10.213.0.1/24") {
		t.Fatalf("network setup: %v: %s", err, out)
	}
	bn.dns = bn.in("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=10.213.0.1", "--hostsdir="+filepath.Dir(bn.hosts),
		// The run's data dir is private (0700): dnsmasq must not drop to nobody.
		"--user=root",
		"--pid-file="+filepath.Join(bn.root, "dnsmasq.pid"))
	if bn.dnsLog, err = os.Create(filepath.Join(bn.root, "dnsmasq.log")); err != nil {
		t.Fatal(err)
	}
	bn.dns.Stdout, bn.dns.Stderr = bn.dnsLog, bn.dnsLog
	if err := bn.dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bn.dns.Process.Kill(); bn.dns.Wait() })
	return bn
}

// in is a command in the namespace.
func (bn *bridgeNet) in(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", bn.ns}, args...)...)
}

// rt runs the runtime in the namespace (where the bridge is) and returns
// its output.
func (bn *bridgeNet) rt(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", bn.ns, env.bin, "--config", bn.config, "--root", bn.root}, args...)...)
	f, err := os.CreateTemp(bn.root, "out")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// Detached containers keep their stdio: a file, not a pipe.
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	b, _ := os.ReadFile(f.Name())
	return string(b), err
}

// waitPing waits until container from pings container to by name: dnsmasq
// reads its hosts dir when it changes (inotify), a moment after the start.
func (bn *bridgeNet) waitPing(t *testing.T, from, to string) {
	t.Helper()
	poll(t, time.Minute, from+" to ping "+to+" by name", func() (bool, string) {
		if bn.dns.ProcessState != nil {
			return false, "dnsmasq exited"
		}
		out, err := bn.rt("exec", from, "ping", "-c", "1", "-W", "5", to)
		if err == nil && strings.Contains(out, "1 packets received") {
			return true, ""
		}
		diag, _ := bn.rt("exec", from, "sh", "-c", "cat /etc/resolv.conf; ip -4 addr show eth0; nslookup "+to+" 10.213.0.1")
		log, _ := os.ReadFile(bn.dnsLog.Name())
		hostsNow, _ := os.ReadFile(bn.hosts)
		return false, out + "\n" + diag + "\ndnsmasq: " + string(log) + "\nhosts: " + string(hostsNow)
	})
}

// TestBridgeModeTemplates runs the seed's bridge mode on clones of a VM
// template: each clone's NIC gets its lease's address, its own MAC and the
// bridge's name server after the restore, and the two ping each other by
// name. The run has a data dir of its own: TestBridgeMode, in parallel,
// counts the hosts file's entries.
func TestBridgeModeTemplates(t *testing.T) {
	needVMs(t)
	requirePrograms(t, deb("dnsmasq-base", "dnsmasq"), deb("iproute2", "ip"))
	t.Parallel()
	dataDir := t.TempDir()
	cfg := writeConfig(t, func(c *runtime.Config) { c.DataDir = dataDir; c.ShareFS = "9p"; c.Templates = true })
	bn := newBridgeNet(t, cfg, dataDir)
	bundle := writeBundle(t, busyboxSpec(t, "sh", "-c", "exec sleep 3600"))
	ids := []string{"brt-a", "brt-b"}
	t.Cleanup(func() {
		for _, id := range ids {
			bn.rt("delete", "--force", id)
		}
	})
	for _, id := range ids {
		if out, err := bn.rt("run", "--detach", "--bundle", bundle, id); err != nil {
			t.Fatalf("run -d %s: %v: %s", id, err, out)
		}
		if b, err := os.ReadFile(filepath.Join(bn.root, id, "console.log")); err != nil || strings.Contains(string(b), "Linux version") {
			t.Fatalf("%s booted instead of restoring a template (%v); console:\n%s", id, err, b)
		}
	}
	bn.waitPing(t, "brt-a", "brt-b")
	// A clone's eth0 is up when its first process runs, and its template
	// waited out the kernel's linkwatch window before its save
	// (guestagent settleLinks: the guest phase "links").
	probe := writeBundle(t, busyboxSpec(t, "cat", "/sys/class/net/eth0/operstate"))
	if out, err := bn.rt("run", "--timings", "--bundle", probe, "brt-probe"); err != nil ||
		!strings.HasPrefix(out, "up\n") || !strings.Contains(out, "restored from a template") || !strings.Contains(out, " links=") {
		t.Errorf("run --timings of a clone: %v; want eth0 up and the template's links phase:\n%s", err, out)
	}
	assertNothingLeft(t, "brt-probe")
	macs := map[string]bool{}
	for _, id := range ids {
		out, err := bn.rt("exec", id, "sh", "-c", "cat /etc/resolv.conf /sys/class/net/eth0/address")
		if err != nil || !strings.Contains(out, "nameserver 10.213.0.1\n") {
			t.Errorf("%s: resolv.conf and MAC: %v: %q", id, err, out)
		}
		macs[strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])] = true
	}
	if len(macs) != len(ids) {
		t.Errorf("the clones share a MAC: %v", macs)
	}
	for _, id := range ids {
		if out, err := bn.rt("delete", "--force", id); err != nil {
			t.Errorf("delete -f %s: %v: %s", id, err, out)
		}
		assertNothingLeft(t, id)
	}
	if b, _ := os.ReadFile(bn.hosts); strings.TrimSpace(string(b)) != "" {
		t.Errorf("hosts entries left: %q", b)
	}
}
