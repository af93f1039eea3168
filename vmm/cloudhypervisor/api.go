package cloudhypervisor

import (
	"context"
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
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost/api/v1/"+endpoint, nil)
	if err != nil {
		return err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on %q: %w", method, endpoint, a.socket, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%w: %s %s: %s: %s", vmm.ErrVMMRequest, method, endpoint, resp.Status, strings.TrimSpace(string(body)))
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
