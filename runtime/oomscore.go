package runtime

import (
	"fmt"
	"sync"
)

// oomAdjuster is what a pod needs of its VM to weigh it for the host's
// OOM killer as its containers come and go. Both drivers have it.
type oomAdjuster interface {
	SetOOMScoreAdj(adj int) error
}

// hostOOM is the host OOM killer's adjustment of one VM's host processes
// (the VMM and its virtiofsd), whose memory is its containers'. runc writes
// the spec's process.oomScoreAdj for the container's process; here the
// guest's process gets it in the guest (procinit) and the VM's processes get
// it on the host: the value of the container that booted the VM, given to
// them as they start (vmm.Config.OOMScoreAdj). A pod's VM, once members
// with a value have joined, takes the lowest of theirs, as gVisor's runsc
// weighs its sandbox: ending the VM ends every member, so it is weighed as
// its most protected member asks, and the sandbox's own value (kubelet's
// pause container has -998) no longer counts. When the last of them
// leaves, the VM goes back to its own value (and keeps the last one when
// it had none: the caller's value is not known).
type hostOOM struct {
	mu      sync.Mutex
	own     *int           // the booting container's, nil: none
	members map[string]int // the members' that have one
	applied *int           // what the VM's processes have, nil: what they inherited
}

func newHostOOM(own *int) *hostOOM {
	h := &hostOOM{members: map[string]int{}}
	if own != nil {
		v := *own
		h.own, h.applied = &v, &v
	}
	return h
}

// want is the value the VM's processes should have (nil: leave them).
func (h *hostOOM) want() *int {
	var low *int
	for _, v := range h.members {
		if low == nil || v < *low {
			low = &v
		}
	}
	if low == nil {
		return h.own
	}
	return low
}

// apply gives the VM's processes want() with set when it differs from
// what they have.
func (h *hostOOM) apply(set func(adj int) error) error {
	w := h.want()
	if w == nil || (h.applied != nil && *h.applied == *w) {
		return nil
	}
	if err := set(*w); err != nil {
		return err
	}
	v := *w
	h.applied = &v
	return nil
}

// join counts member id's value (nil: it has none, and changes nothing)
// and applies the result. On error the member is not counted and the VM
// keeps its value (a value below the VMM's floor without
// CAP_SYS_RESOURCE: runc's init fails the same way).
func (h *hostOOM) join(id string, adj *int, set func(adj int) error) error {
	if adj == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members[id] = *adj
	if err := h.apply(set); err != nil {
		delete(h.members, id)
		return fmt.Errorf("weighing the vm for the host's oom killer with container %q's oomScoreAdj %d: %w", id, *adj, err)
	}
	return nil
}

// leave forgets member id's value and applies the result.
func (h *hostOOM) leave(id string, set func(adj int) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.members[id]; !ok {
		return nil
	}
	delete(h.members, id)
	if err := h.apply(set); err != nil {
		return fmt.Errorf("weighing the vm for the host's oom killer without container %q: %w", id, err)
	}
	return nil
}
