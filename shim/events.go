package shim

import (
	eventstypes "github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The events of containerd's required order: TaskCreate → TaskStart →
// TaskExit → TaskDelete for a task, TaskExecAdded → TaskExecStarted →
// TaskExit for an exec. The service publishes them in the order they are
// sent, from one goroutine.

func startEvent(p *taskProcess) any {
	if p.execID == "" {
		return &eventstypes.TaskStart{ContainerID: p.containerID, Pid: p.pid}
	}
	return &eventstypes.TaskExecStarted{ContainerID: p.containerID, ExecID: p.execID, Pid: p.pid}
}

// exitEvent is sent with p.mu held, after the exit was recorded.
func exitEvent(p *taskProcess) any {
	id := p.execID
	if id == "" {
		id = p.containerID
	}
	return &eventstypes.TaskExit{
		ContainerID: p.containerID,
		ID:          id,
		Pid:         p.pid,
		ExitStatus:  uint32(p.exitStatus),
		ExitedAt:    timestamppb.New(p.exitedAt),
	}
}

// oomEvent says the guest's OOM killer ended p's container's process; it
// precedes that exit's TaskExit.
func oomEvent(p *taskProcess) any {
	return &eventstypes.TaskOOM{ContainerID: p.containerID}
}
