package shim

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// TestToGRPCCreate: what the runtime cannot run is never Unimplemented
// from Create (containerd would retry on task API v2 and lose the
// reason); elsewhere it stays NotImplemented; the text survives.
func TestToGRPCCreate(t *testing.T) {
	unsupported := fmt.Errorf("connecting container %q to its network: %w: the spec has no network namespace (the host's network)", "c", runtime.ErrUnsupported)
	tests := []struct {
		name string
		f    func(error) error
		err  error
		is   func(error) bool
		text string
	}{
		{"unsupported at create", toGRPCCreate, unsupported, errdefs.IsFailedPrecondition, "the host's network"},
		{"not implemented at create", toGRPCCreate, fmt.Errorf("restoring a checkpoint: %w", errdefs.ErrNotImplemented), errdefs.IsFailedPrecondition, "restoring a checkpoint"},
		{"another error at create", toGRPCCreate, fmt.Errorf("task %q: %w", "x", errdefs.ErrAlreadyExists), errdefs.IsAlreadyExists, "task"},
		{"unsupported elsewhere", toGRPC, unsupported, errdefs.IsNotImplemented, "the host's network"},
		{"wrong state", toGRPC, fmt.Errorf("x: %w", runtime.ErrWrongState), errdefs.IsFailedPrecondition, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errgrpc.ToNative(tt.f(tt.err))
			if !tt.is(err) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %v (%T)", err, errors.Unwrap(err))
			}
		})
	}
}
