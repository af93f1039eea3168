package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// criPod is a pod sandbox made through crictl, with its config file (crictl
// create needs it again for each container).
type criPod struct {
	id     string
	name   string
	config string // the PodSandboxConfig JSON file
	logDir string
}

// runPod runs a pod sandbox named name with the CRI runtime handler
// ("runc", or initosHandler), its logs under this containerd's dir.
func (c *containerd) runPod(t testing.TB, name, handler string) *criPod {
	t.Helper()
	return c.runPodWith(t, name, handler, map[string]any{})
}

// runPodWith is runPod with the PodSandboxConfig's linux section (e.g.
// the pod's total resources).
func (c *containerd) runPodWith(t testing.TB, name, handler string, linux map[string]any) *criPod {
	t.Helper()
	p := c.podConfig(t, name, map[string]any{"hostname": name, "linux": linux})
	p.id = c.ok(t, "crictl", "runp", "--runtime", handler, p.config)
	return p
}

// podConfig writes the PodSandboxConfig of pod name: its metadata and log
// directory, and fields.
func (c *containerd) podConfig(t testing.TB, name string, fields map[string]any) *criPod {
	t.Helper()
	p := &criPod{name: name, logDir: filepath.Join(c.dir, "pods", name), config: filepath.Join(c.dir, "pods", name+".json")}
	if err := os.MkdirAll(p.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": "uid-" + name, "attempt": 0},
		"log_directory": p.logDir,
	}
	for k, v := range fields {
		config[k] = v
	}
	writeJSON(t, p.config, config)
	return p
}

// startContainer creates and starts container name in pod p from
// containerdImage with args as its command, and returns its ID.
func (c *containerd) startContainer(t testing.TB, p *criPod, name string, args ...string) string {
	t.Helper()
	return c.startContainerWith(t, p, name, map[string]any{}, args...)
}

// startContainerWith is startContainer with the ContainerConfig's linux
// section (resources, security context).
func (c *containerd) startContainerWith(t testing.TB, p *criPod, name string, linux map[string]any, args ...string) string {
	t.Helper()
	return c.startContainerConfig(t, p, name, map[string]any{"linux": linux}, args...)
}

// startContainerConfig is startContainer with fields of the
// ContainerConfig (mounts, linux).
func (c *containerd) startContainerConfig(t testing.TB, p *criPod, name string, fields map[string]any, args ...string) string {
	t.Helper()
	config := filepath.Join(c.dir, "pods", p.name+"-"+name+".json")
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": containerdImage},
		"command":  args,
		"log_path": name + ".log",
	}
	for k, v := range fields {
		cfg[k] = v
	}
	writeJSON(t, config, cfg)
	id := c.ok(t, "crictl", "create", p.id, config, p.config)
	c.ok(t, "crictl", "start", id)
	return id
}

// waitExited waits until CRI reports container id exited and returns its
// exit code.
func (c *containerd) waitExited(t testing.TB, id string, timeout time.Duration) int {
	t.Helper()
	var code int
	poll(t, timeout, "exit of CRI container "+id, func() (bool, string) {
		r := c.crictl(t, "inspect", "--output", "json", id)
		if r.code != 0 {
			return false, fmt.Sprintf("crictl inspect: exit %d: %s", r.code, r.stderr)
		}
		var st struct {
			Status struct {
				State    string `json:"state"`
				ExitCode int    `json:"exitCode"`
			} `json:"status"`
		}
		if err := json.Unmarshal(r.stdout, &st); err != nil {
			return false, fmt.Sprintf("crictl inspect: %v: %s", err, r.stdout)
		}
		code = st.Status.ExitCode
		return st.Status.State == "CONTAINER_EXITED", st.Status.State
	})
	return code
}

// removePod stops and removes pod p and checks that its containers ids,
// the sandbox and the pod's VM are gone.
func (c *containerd) removePod(t testing.TB, p *criPod, ids ...string) {
	t.Helper()
	c.ok(t, "crictl", "stopp", p.id)
	c.ok(t, "crictl", "rmp", p.id)
	for _, id := range append(ids, p.id) {
		c.assertGone(t, id)
	}
	if vmms := vmmsOf(c.shimStateDir(criNamespace, p.id)); len(vmms) != 0 {
		t.Errorf("VMMs left after rmp: %v", vmms)
	}
}

// podIP is the pod's IPv4 address as CRI reports it.
func (c *containerd) podIP(t testing.TB, p *criPod) string {
	t.Helper()
	out := c.ok(t, "crictl", "inspectp", "--output", "go-template", "--template", "{{.status.network.ip}}", p.id)
	return strings.TrimSpace(out)
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
