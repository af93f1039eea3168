package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pickNetworks chooses bridge names and /24 subnets of 10.214.0.0/16 that no
// interface of the host has yet: ictdcN (CRI, 10.214.2N.0/24) and ictdnN
// (nerdctl, 10.214.2N+1.0/24).
func (c *containerd) pickNetworks(t testing.TB) {
	t.Helper()
	for i := 0; i < 127; i++ {
		n := int(containerdSeq.Add(1)-1) % 127
		cri, nerd := fmt.Sprintf("ictdc%d", n), fmt.Sprintf("ictdn%d", n)
		if linkExists(cri) || linkExists(nerd) {
			continue
		}
		c.criBridge, c.nerdctlBridge = cri, nerd
		c.criSubnet, c.nerdctlSubnet = fmt.Sprintf("10.214.%d.0/24", 2*n), fmt.Sprintf("10.214.%d.0/24", 2*n+1)
		return
	}
	t.Fatal("no free bridge name ictdcN/ictdnN (N < 127) for the private containerd: stale bridges? (ip link show type bridge)")
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// bridgeConflist is a CNI network: a bridge with host-local addresses (kept
// in ipamDir), a default route through the bridge's address, no
// masquerading, and portmap for published ports.
func bridgeConflist(name, bridge, subnet, ipamDir string, extra map[string]any) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       name,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	for k, v := range extra {
		conf[k] = v
	}
	return json.MarshalIndent(conf, "", "  ")
}

// writeConfigs writes containerd's config.toml, the initos runtime's config,
// the CNI networks, nerdctl.toml and crictl.yaml.
func (c *containerd) writeConfigs(t testing.TB) {
	t.Helper()
	for _, d := range []string{c.root, c.state, c.initosRoot, c.fifoDir, c.criNetConf, c.nerdctlNetConf, c.nerdctlRoot, filepath.Join(c.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cfg := env.cfg
	cfg.Root = c.initosRoot
	initos, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}

	// version 3 is containerd 2's schema. Plugins that would reach outside
	// dir or are of no use here are off: NRI (/var/run/nri/nri.sock, shared
	// with any other containerd), opt (/opt/containerd), tracing, and the
	// snapshotters other than overlayfs and native. CRI's netns mounts live
	// under state, the pause image is pinned (and never pulled: it is
	// imported), CNI plugins come from /usr/lib/cni. restrict_oom_score_adj:
	// the pause container's oom_score_adj (-998) is below ours, and lowering
	// it is not allowed here (runc: "failed to update
	// /proc/self/oom_score_adj: Permission denied"). CRI's runc keeps its
	// state under dir too.
	conf := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
temp = %[3]q
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
]

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %[6]q

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%[7]q]
  conf_dir = %[8]q
  max_conf_num = 1

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = %[9]q

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  Root = %[13]q

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.%[10]s]
  runtime_type = %[11]q

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.%[10]s.options]
  ConfigPath = %[12]q

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, c.root, c.state, filepath.Join(c.dir, "tmp"), c.address, c.ttrpc, pauseImage,
		cniBinDir, c.criNetConf, runcRuntimeType, initosHandler, initosRuntimeType, c.initosConfig, filepath.Join(c.dir, "runc"))

	criNet, err := bridgeConflist("initos-cri", c.criBridge, c.criSubnet, filepath.Join(c.dir, "ipam"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// nerdctl's default network is the one named "bridge" (its file name
	// and ID as nerdctl would make them), here on a bridge of its own.
	id := sha256.Sum256([]byte("bridge"))
	nerdctlNet, err := bridgeConflist("bridge", c.nerdctlBridge, c.nerdctlSubnet, filepath.Join(c.dir, "ipam"), map[string]any{
		"nerdctlID":     hex.EncodeToString(id[:]),
		"nerdctlLabels": map[string]string{"nerdctl/default-network": "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	nerdctlConf := fmt.Sprintf(`address = %q
namespace = %q
data_root = %q
cni_path = %q
cni_netconfpath = %q
cgroup_manager = "cgroupfs"
snapshotter = "overlayfs"
hosts_dir = [%q]
`, c.address, nerdctlNamespace, c.nerdctlRoot, cniBinDir, c.nerdctlNetConf, filepath.Join(c.dir, "certs.d"))
	endpoint := "unix://" + c.address
	crictlConf := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: %d\ndebug: false\npull-image-on-create: false\ndisable-pull-on-run: true\n",
		endpoint, endpoint, int(crictlRPCTimeout.Seconds()))

	for path, content := range map[string][]byte{
		c.config:       []byte(conf),
		c.initosConfig: initos,
		filepath.Join(c.criNetConf, "10-initos-cri.conflist"):      criNet,
		filepath.Join(c.nerdctlNetConf, "nerdctl-bridge.conflist"): nerdctlNet,
		c.nerdctlTOML:  []byte(nerdctlConf),
		c.crictlConfig: []byte(crictlConf),
	} {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The tools see none of the caller's settings for them (each has
	// environment variables that override its defaults).
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "CONTAINERD_"), strings.HasPrefix(name, "NERDCTL_"),
			name == "CNI_PATH", name == "NETCONFPATH", name == "CRI_CONFIG_FILE",
			name == "CONTAINER_RUNTIME_ENDPOINT", name == "IMAGE_SERVICE_ENDPOINT", name == "INITOS_CONFIG":
			continue
		}
		c.toolEnv = append(c.toolEnv, kv)
	}
	c.toolEnv = append(c.toolEnv, "NERDCTL_TOML="+c.nerdctlTOML, "CRI_CONFIG_FILE="+c.crictlConfig)
}
