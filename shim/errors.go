package shim

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// toGRPC maps an error to its ttrpc status at the shim's edge: the
// runtime's sentinels and the agent's codes become containerd's errdefs
// classes, whose codes containerd and its clients test.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	var ae *runtime.AgentError
	switch {
	case errors.Is(err, runtime.ErrWrongState):
		err = fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case errors.Is(err, runtime.ErrNotExist):
		err = fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case errors.Is(err, runtime.ErrUnsupported):
		err = fmt.Errorf("%w: %w", errdefs.ErrNotImplemented, err)
	case errors.Is(err, runtime.ErrBootTimeout):
		err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	case errors.As(err, &ae) && ae.Code == codes.FailedPrecondition:
		err = fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case errors.As(err, &ae) && ae.Code == codes.InvalidArgument:
		err = fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	case errors.As(err, &ae) && ae.Code == codes.NotFound:
		err = fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return errgrpc.ToGRPC(err)
}

// toGRPCCreate is toGRPC for Create. containerd's task client reads
// Unimplemented from task.Create as "this shim serves no task API v3",
// retries on v2 ("downgrading client API version") and reports that
// call's failure instead of ours. So what this runtime cannot run (a
// spec's host network, a checkpoint to restore) is a failed precondition
// here, with its reason.
func toGRPCCreate(err error) error {
	if errors.Is(err, runtime.ErrUnsupported) || errdefs.IsNotImplemented(err) {
		// Its text only: a NotImplemented class in the chain would win.
		err = fmt.Errorf("%w: %s", errdefs.ErrFailedPrecondition, err)
	}
	return toGRPC(err)
}
