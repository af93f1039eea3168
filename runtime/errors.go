package runtime

import "errors"

// Sentinel errors of the runtime layer. Callers test them with errors.Is; the
// CLI and the shim map them to their own codes at their edge.
var (
	// ErrNoKernel: no usable guest kernel was found.
	ErrNoKernel = errors.New("no guest kernel")
	// ErrNoAgent: the guest agent binary was not found.
	ErrNoAgent = errors.New("no guest agent binary")
	// ErrContainerExists: the id is already used under the state root.
	ErrContainerExists = errors.New("container already exists")
	// ErrBootTimeout: the VM did not reach its agent before the deadline.
	ErrBootTimeout = errors.New("guest agent not ready before the deadline")
	// ErrBootStalled: the guest's console shows a stall it never
	// recovers from (bootStalls); a new boot of the VM does.
	ErrBootStalled = errors.New("guest boot stalled")
	// ErrVMExited: the VMM exited while the runtime still needed it.
	ErrVMExited = errors.New("virtual machine exited")
	// ErrUnsupported: the spec asks for something a VM cannot give.
	ErrUnsupported = errors.New("not supported")
	// ErrAgentReply: a reply of the guest agent broke the protocol's bounds
	// (the host trusts nothing the guest sends).
	ErrAgentReply = errors.New("agent reply out of bounds")
	// errNoHugeRAM: guest RAM that must be shared goes in a memfd, on the
	// host's small pages (hugeRAMHost); the wrapped reason says why.
	errNoHugeRAM = errors.New("no huge pages for shared guest RAM")
)

// Lifecycle errors (runtime-spec runtime.md "Operations").
var (
	// ErrNotExist: no container with that id under the state root.
	ErrNotExist = errors.New("container does not exist")
	// ErrWrongState: the operation is not allowed in the container's state.
	ErrWrongState = errors.New("operation not allowed in this state")
)
