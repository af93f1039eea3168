package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// RuntimeName is the runtime name containerd maps to this binary.
const RuntimeName = "io.containerd.initos.v2"

// Version is the shim's version, set by the linker (-X).
var Version = "dev"

// BinaryOpts configure containerd's shim skeleton: the shim waits for its
// own children (the VMM, logging binaries) with exec.Cmd, so containerd's
// global reaper, which would steal their exit statuses, stays off, and
// the shim is no subreaper: nothing of a container runs as its child.
func BinaryOpts(c *cshim.Config) {
	c.NoReaper = true
	c.NoSubreaper = true
}

// groupLabels name the annotation whose value groups containers into one
// shim (and one VM): the CRI's pod sandbox id.
var groupLabels = []string{
	"io.kubernetes.cri.sandbox-id",
}

// Manager is the shim binary's bootstrap: start a shim server (or find
// the pod's), clean up after a dead one, describe the runtime.
type Manager struct{ name string }

// NewManager returns the Manager for runtime name.
func NewManager(name string) *Manager { return &Manager{name: name} }

// Name is the runtime name.
func (m *Manager) Name() string { return m.name }

// Start runs a shim server for the container (or reuses the pod's) and
// returns its address. It runs in the bundle directory.
func (m *Manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	id := params.GetInstanceID()
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"}
	grouping, err := groupID(id, ".")
	if err != nil {
		return nil, err
	}
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = "/run/containerd/s"
	}
	address, err := cshim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), grouping, false)
	if err != nil {
		return nil, fmt.Errorf("making the shim socket address for %q: %w", id, err)
	}
	l, err := cshim.NewSocket(address)
	if err != nil {
		if !cshim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("creating shim socket %q: %w", address, err)
		}
		// The pod's shim serves this container too.
		if cshim.CanConnect(address) {
			result.Address = address
			return result, nil
		}
		if err := cshim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("removing stale shim socket %q: %w", address, err)
		}
		if l, err = cshim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("creating shim socket %q: %w", address, err)
		}
	}
	defer func() {
		if retErr != nil {
			l.Close()
			_ = cshim.RemoveSocket(address)
		}
	}()
	f, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("shim socket %q: %w", address, err)
	}
	defer f.Close()

	cmd, err := serverCommand(ctx, id, params)
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{f}
	goruntime.LockOSThread()
	err = cmd.Start()
	goruntime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("starting the shim server for %q: %w", id, err)
	}
	go cmd.Wait() //nolint:errcheck // the server outlives this process
	if err := cshim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("adjusting the oom score of shim %d: %w", cmd.Process.Pid, err)
	}
	result.Address = address
	return result, nil
}

// serverCommand is this binary re-run as the long-lived shim server.
func serverCommand(ctx context.Context, id string, params *bootapi.BootstrapParams) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the shim's executable: %w", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	// A session of its own: the shim outlives containerd's restarts and
	// its signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// groupID is the shim grouping key of container id whose bundle is dir:
// the pod's sandbox id, else the id itself.
func groupID(id, dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", fmt.Errorf("reading the spec of %q: %w", id, err)
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("parsing the spec of %q: %w", id, err)
	}
	for _, l := range groupLabels {
		if g, ok := s.Annotations[l]; ok && g != "" {
			return g, nil
		}
	}
	return id, nil
}

// Stop cleans up after a shim server that is gone (containerd's "delete"
// action, run in the container's bundle directory): the VMM, the rootfs
// mount, the network namespace, the disk and the state are removed.
func (m *Manager) Stop(ctx context.Context, id string) (cshim.StopStatus, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return cshim.StopStatus{}, err
	}
	bundle := filepath.Join(filepath.Dir(cwd), id)
	// A shim server that died (kill -9, OOM) left its socket; one that
	// still answers serves other containers of its pod.
	if addr := shimAddress(bundle); addr != "" && !cshim.CanConnect(addr) {
		if err := cshim.RemoveSocket(addr); err != nil {
			log.G(ctx).WithError(err).Warn("removing a dead shim's socket")
		}
	}
	rec, err := readRecord(bundle)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Never created, or already deleted: only the rootfs may be left.
		if err := unmountRootfs(filepath.Join(bundle, "rootfs")); err != nil {
			log.G(ctx).WithError(err).Warn("unmounting the rootfs")
		}
		return cshim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
	case err != nil:
		return cshim.StopStatus{}, err
	}
	if err := rec.cleanup(bundle); err != nil {
		log.G(ctx).WithError(err).Warn("cleaning up after the shim")
	}
	return cshim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL), Pid: rec.VMMPid}, nil
}

// Info describes the runtime and checks its options. Its features are the
// runtime's (runtime-spec features.md, as `initos-runtime features` prints
// them): containerd's CRI reads them (`shim -info`) for each runtime
// handler, e.g. "rro" in mountOptions as support for recursive read-only
// mounts.
func (m *Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	features, err := typeurl.MarshalAnyToProto(runtime.Features())
	if err != nil {
		return nil, fmt.Errorf("marshalling the runtime's features: %w", err)
	}
	info := &types.RuntimeInfo{
		Name:     m.name,
		Version:  &types.RuntimeVersion{Version: Version, Revision: "initos-runtime"},
		Features: features,
	}
	opts, err := readOptionsFrom(optionsR)
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	if _, err := resolveConfig(opts); err != nil {
		return nil, err
	}
	return info, nil
}

// shimRoot is the shim's state root beside the CLI's (its containers are
// no runc-style state the CLI could read).
func shimRoot(c runtime.Config) string { return c.Root + "-shim" }

// shimAddress is the shim socket containerd recorded for a bundle, in
// bootstrap.json (containerd ≥ 2.3) or address (older); "" if neither.
func shimAddress(bundle string) string {
	if b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json")); err == nil {
		var r struct {
			Address string `json:"address"`
		}
		if json.Unmarshal(b, &r) == nil && r.Address != "" {
			return r.Address
		}
	}
	if addr, err := cshim.ReadAddress(filepath.Join(bundle, "address")); err == nil {
		return addr
	}
	return ""
}
