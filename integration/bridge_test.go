package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	ns := fmt.Sprintf("initos-it-%d", time.Now().UnixNano()%1000000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	}
	if out, err := inNS("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	root := t.TempDir()
	// The runtime runs in the namespace (where the bridge is).
	rtNS := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), env.runTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, env.bin, "--config", env.config, "--root", root}, args...)...)
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			return "", err
		}
		defer f.Close()
		// Detached containers keep their stdio: a file, not a pipe.
		cmd.Stdout, cmd.Stderr = f, f
		err = cmd.Run()
		b, _ := os.ReadFile(f.Name())
		return string(b), err
	}
	out, err := rtNS("network", "setup")
	if err != nil || !strings.Contains(out, "10.213.0.1/24") {
		t.Fatalf("network setup: %v: %s", err, out)
	}
	hosts := filepath.Join(env.cfg.DataDir, "dns", "hosts")
	dns := inNS("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=10.213.0.1", "--hostsdir="+filepath.Dir(hosts),
		// The run's data dir is private (0700): dnsmasq must not drop to nobody.
		"--user=root",
		"--pid-file="+filepath.Join(root, "dnsmasq.pid"))
	dnsLog, err := os.Create(filepath.Join(root, "dnsmasq.log"))
	if err != nil {
		t.Fatal(err)
	}
	dns.Stdout, dns.Stderr = dnsLog, dnsLog
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Process.Kill(); dns.Wait() })

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
	// dnsmasq reads its hosts dir when it changes (inotify): allow it a
	// moment to see br-b.
	poll(t, time.Minute, "br-a to ping br-b by name", func() (bool, string) {
		if dns.ProcessState != nil {
			return false, "dnsmasq exited"
		}
		out, err := rtNS("exec", "br-a", "ping", "-c", "1", "-W", "5", "br-b")
		if err == nil && strings.Contains(out, "1 packets received") {
			return true, ""
		}
		diag, _ := rtNS("exec", "br-a", "sh", "-c", "cat /etc/resolv.conf; ip -4 addr show eth0; nslookup br-b 10.213.0.1")
		log, _ := os.ReadFile(dnsLog.Name())
		hostsNow, _ := os.ReadFile(hosts)
		return false, out + "\n" + diag + "\ndnsmasq: " + string(log) + "\nhosts: " + string(hostsNow)
	})

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
