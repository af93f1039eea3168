package runtime

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/containerd/ttrpc"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// agentService is the guest agent's ttrpc service name.
const agentService = "initos.agent.v1.Agent"

// Bounds on the encoded size of the agent's replies. ttrpc refuses a
// message over 4 MiB, but a reply below that can still decode into far more
// (a ListProcesses reply of empty entries grows about 70 times in memory),
// and none but the output reads needs more than a few KiB.
const (
	maxAgentReply          = 64 << 10
	maxAgentProcessesReply = 512 << 10
	maxAgentReadReply      = agentapi.MaxReadBytes + 1<<10 // data and framing
	maxAgentPortReply      = MaxPortRead + 1<<10
)

// agentReplyLimit is the largest reply the host accepts for a method of
// the agent; other services (the monitor's) are the host's own.
func agentReplyLimit(fullMethod string) (int, bool) {
	method, ok := strings.CutPrefix(fullMethod, "/"+agentService+"/")
	if !ok {
		return 0, false
	}
	switch method {
	case "ReadStdout", "ReadStderr":
		return maxAgentReadReply, true
	case "ListProcesses":
		return maxAgentProcessesReply, true
	case "ReadPort":
		return maxAgentPortReply, true
	}
	return maxAgentReply, true
}

// boundAgentReplies is a ttrpc client interceptor that refuses an agent
// reply over its method's bound before it is decoded.
func boundAgentReplies(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if err := invoke(ctx, req, resp); err != nil {
		return err
	}
	if limit, ok := agentReplyLimit(info.FullMethod); ok && len(resp.Payload) > limit {
		return fmt.Errorf("agent reply to %s: %d bytes, more than %d: %w", info.FullMethod, len(resp.Payload), limit, ErrAgentReply)
	}
	return nil
}

// newAgentClient is a ttrpc client on conn whose agent replies are
// bounded (boundAgentReplies).
func newAgentClient(conn net.Conn, opts ...ttrpc.ClientOpts) *ttrpc.Client {
	return ttrpc.NewClient(conn, append(opts, ttrpc.WithUnaryClientInterceptor(boundAgentReplies))...)
}

// maxGuestArgBytes bounds each name and argument of a guest process as the
// host keeps it.
const maxGuestArgBytes = 4 << 10

// guestProcesses makes the agent's process list safe to print (ps, the
// shim's Pids): names and arguments become guestText.
func guestProcesses(procs []*agentapi.ProcessInfo) []*agentapi.ProcessInfo {
	for _, p := range procs {
		if p == nil {
			continue
		}
		p.Comm = guestText(p.Comm, maxGuestArgBytes)
		for i, a := range p.Args {
			p.Args[i] = guestText(a, maxGuestArgBytes)
		}
	}
	return slices.DeleteFunc(procs, func(p *agentapi.ProcessInfo) bool { return p == nil })
}
