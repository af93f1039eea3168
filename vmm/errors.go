package vmm

import "errors"

// Sentinel errors of the VMM layer; test them with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate found a problem.
	ErrInvalidConfig = errors.New("invalid vm config")
	// ErrNotStarted: the call needs a VM whose Start succeeded.
	ErrNotStarted = errors.New("vm not started")
	// ErrAlreadyStarted: Start was called on a VM that runs.
	ErrAlreadyStarted = errors.New("vm already started")
	// ErrVMExited: the VMM process exited (or was never running) when the
	// call needed it.
	ErrVMExited = errors.New("vmm process exited")
	// ErrAgentTimeout: no connection to the guest agent before the deadline.
	ErrAgentTimeout = errors.New("guest agent not reachable before the deadline")
	// ErrHandshake: the agent transport answered with something else than
	// its protocol allows.
	ErrHandshake = errors.New("agent transport handshake failed")
	// ErrStateDirInUse: a socket in the state dir is served by a live process.
	ErrStateDirInUse = errors.New("state dir in use")
	// ErrNoVirtiofsd: a virtiofs share was asked for and no virtiofsd exists.
	ErrNoVirtiofsd = errors.New("virtiofsd not found")
	// ErrNoKVM: the driver needs KVM and the host has no usable KVM.
	ErrNoKVM = errors.New("no usable kvm")
	// ErrVMMRequest: the VMM's control API (QMP, REST) refused a request.
	ErrVMMRequest = errors.New("vmm control request failed")
	// ErrNotReadyable: a Supervisor's Ready failed in a way polling again
	// cannot mend (a device the VMM refused); Start gives up at once.
	ErrNotReadyable = errors.New("vmm cannot become ready")
	// ErrNoSlot: a disk cannot be attached, every slot is taken.
	ErrNoSlot = errors.New("no free disk slot")
)
