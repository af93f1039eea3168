package cloudhypervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// apiTimeout bounds one API request when ctx has no deadline.
const apiTimeout = 10 * time.Second

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 4 << 10

// maxAnswer bounds a decoded answer (vm.info carries the VM's whole
// configuration and device tree).
const maxAnswer = 1 << 20

// apiClient speaks cloud-hypervisor's REST API (HTTP/1.1 over the unix
// socket given by --api-socket).
type apiClient struct {
	socket string
	http   *http.Client
}

func newAPIClient(socket string) *apiClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &apiClient{socket: socket, http: &http.Client{Transport: tr}}
}

// do sends method /api/v1/endpoint without a body; any 2xx is success.
func (a *apiClient) do(ctx context.Context, method, endpoint string) error {
	return a.doJSON(ctx, method, endpoint, nil)
}

// doJSON is do with a JSON body (nil: none).
func (a *apiClient) doJSON(ctx context.Context, method, endpoint string, body any) error {
	return a.request(ctx, method, endpoint, body, nil)
}

// get sends GET /api/v1/endpoint and decodes its JSON answer into out.
func (a *apiClient) get(ctx context.Context, endpoint string, out any) error {
	return a.request(ctx, http.MethodGet, endpoint, nil, out)
}

// request sends method /api/v1/endpoint with body as JSON (nil: none) and,
// when out is not nil, decodes a successful answer into it.
func (a *apiClient) request(ctx context.Context, method, endpoint string, body, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost/api/v1/"+endpoint, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on %q: %w", method, endpoint, a.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return fmt.Errorf("%w: %s %s: %s: %s", vmm.ErrVMMRequest, method, endpoint, resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("%w: %s %s: decoding the answer: %v", vmm.ErrVMMRequest, method, endpoint, err)
	}
	return nil
}

func (a *apiClient) ping(ctx context.Context) error { return a.do(ctx, http.MethodGet, "vmm.ping") }
func (a *apiClient) shutdownVM(ctx context.Context) error {
	return a.do(ctx, http.MethodPut, "vm.shutdown")
}
func (a *apiClient) shutdownVMM(ctx context.Context) error {
	return a.do(ctx, http.MethodPut, "vmm.shutdown")
}
func (a *apiClient) pause(ctx context.Context) error  { return a.do(ctx, http.MethodPut, "vm.pause") }
func (a *apiClient) resume(ctx context.Context) error { return a.do(ctx, http.MethodPut, "vm.resume") }

// diskConfig is the part of cloud-hypervisor's DiskConfig we set.
type diskConfig struct {
	Path     string `json:"path"`
	ID       string `json:"id"`
	Serial   string `json:"serial"`
	Readonly bool   `json:"readonly,omitempty"`
}

// fsConfig is cloud-hypervisor's FsConfig. The API's schema requires
// num_queues and queue_size ("required: [num_queues, queue_size, socket,
// tag]"); they are its documented defaults, 1 and 1024, as --fs gives.
type fsConfig struct {
	Tag       string `json:"tag"`
	Socket    string `json:"socket"`
	NumQueues int    `json:"num_queues"`
	QueueSize int    `json:"queue_size"`
	ID        string `json:"id"`
}

// netConfig is the part of cloud-hypervisor's NetConfig we set. An
// existing tap keeps its addresses: "Don't overwrite ip configuration of
// existing interfaces" (net_util's open_tap), whatever ip's default.
type netConfig struct {
	Tap string `json:"tap"`
	MAC string `json:"mac"`
	ID  string `json:"id"`
}

// hotplug adds a device to the running VM: PUT vm.add-disk with a
// diskConfig, vm.add-fs with an fsConfig (a virtio-fs device on a
// vhost-user socket), vm.add-net with a netConfig (a virtio-net device on
// a tap).
func (a *apiClient) hotplug(ctx context.Context, dev any) error {
	var endpoint string
	switch dev.(type) {
	case diskConfig:
		endpoint = "vm.add-disk"
	case fsConfig:
		endpoint = "vm.add-fs"
	case netConfig:
		endpoint = "vm.add-net"
	default:
		return fmt.Errorf("hotplugging a %T: no such device", dev)
	}
	return a.doJSON(ctx, http.MethodPut, endpoint, dev)
}

// snapshot writes the paused VM into dir (PUT vm.snapshot): the API's
// VmSnapshotConfig is {"destination_url": "file:///dir"}, and the
// directory must exist ("Given the directory was present on the system,
// the snapshot will succeed", docs/snapshot_restore.md).
func (a *apiClient) snapshot(ctx context.Context, dir string) error {
	return a.doJSON(ctx, http.MethodPut, "vm.snapshot", map[string]string{"destination_url": fileURL(dir)})
}

// fileURL is the file:// URL of an absolute path, as cloud-hypervisor
// takes it: it strips "file://" and uses the rest as the path, unescaped.
func fileURL(path string) string { return "file://" + path }

// vmState is the VM's state from GET vm.info: VmInfo's state is one of
// "Created", "Running", "Shutdown", "Paused".
func (a *apiClient) vmState(ctx context.Context) (string, error) {
	var info struct {
		State string `json:"state"`
	}
	if err := a.get(ctx, "vm.info", &info); err != nil {
		return "", err
	}
	return info.State, nil
}

// removeDevice unplugs a device by id (PUT vm.remove-device).
func (a *apiClient) removeDevice(ctx context.Context, id string) error {
	return a.doJSON(ctx, http.MethodPut, "vm.remove-device", map[string]string{"id": id})
}
