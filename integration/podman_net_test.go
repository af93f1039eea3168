package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPodmanNetwork checks that a VM keeps the engine's networking (design
// section 5): a port published with -p answers on the host's loopback, and
// a container reaches a server in another container on the same podman
// network by name (the engine's DNS, through /etc/resolv.conf). All traffic
// stays in loopback and the namespaces podman makes for the test.
func TestPodmanNetwork(t *testing.T) {
	p := newPodman(t)
	// netavark starts podman's DNS server for the network's names.
	requireProgram(t, "aardvark-dns", "aardvark-dns", "/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns")
	t.Parallel()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%100000)
	netName, srv := "initos-it-"+suffix, "initos-srv-"+suffix
	// An MTU other than 1500 (an overlay's, say) must reach the guest.
	p.createNetwork(t, netName, "--opt", "mtu=1400")
	p.removeLater(t, srv)
	const port = 18080
	p.ok(t, "run", "-d", "--name", srv, "--network", netName, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), podmanImage,
		"sh", "-c", "echo served-by-"+srv+" > /tmp/index.html; exec httpd -f -p 80 -h /tmp")

	want := "served-by-" + srv + "\n"
	waitServed(t, port, want)

	r := p.run(t, nil, "run", "--rm", "--network", netName, podmanImage, "wget", "-q", "-O-", "http://"+srv+"/index.html")
	if r.code != 0 || string(r.stdout) != want {
		t.Fatalf("wget http://%s/ from another container: exit %d, stdout %q, stderr %q", srv, r.code, r.stdout, r.stderr)
	}
	if !p.initos {
		return
	}
	// A VM cannot share the host's network stack: refused, clearly.
	r = p.run(t, nil, "run", "--rm", "--network", "host", podmanImage, "true")
	if r.code == 0 || !strings.Contains(string(r.stderr), "host's network stack") {
		t.Errorf("--network host: exit %d, stderr %q; want a refusal naming the host's network stack", r.code, r.stderr)
	}
	// The guest has the engine's address on eth0, not a second stack.
	addr := strings.TrimSpace(p.inspect(t, srv, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"))
	r = p.run(t, nil, "exec", srv, "ip", "-4", "addr", "show", "eth0")
	if !strings.Contains(string(r.stdout), "inet "+addr+"/") {
		t.Errorf("guest eth0 %q lacks the engine's address %s", r.stdout, addr)
	}
	if !strings.Contains(string(r.stdout), "mtu 1400") {
		t.Errorf("guest eth0 %q: want the network's mtu 1400", r.stdout)
	}
}

// waitServed waits until 127.0.0.1:port serves want as /index.html.
func waitServed(t *testing.T, port int, want string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	poll(t, 3*time.Minute, "the published port to answer", func() (bool, string) {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == want, fmt.Sprintf("%s: %q", resp.Status, b)
	})
}
