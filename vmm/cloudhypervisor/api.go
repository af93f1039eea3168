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
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: %s %s: %s: %s", vmm.ErrVMMRequest, method, endpoint, resp.Status, strings.TrimSpace(string(msg)))
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
	Path   string `json:"path"`
	ID     string `json:"id"`
	Serial string `json:"serial"`
}

// addDisk hotplugs a disk (PUT vm.add-disk).
func (a *apiClient) addDisk(ctx context.Context, d diskConfig) error {
	return a.doJSON(ctx, http.MethodPut, "vm.add-disk", d)
}

// removeDevice unplugs a device by id (PUT vm.remove-device).
func (a *apiClient) removeDevice(ctx context.Context, id string) error {
	return a.doJSON(ctx, http.MethodPut, "vm.remove-device", map[string]string{"id": id})
}
