package procinit

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ProcessOf resolves the spec's process for the helper on a kernel whose
// highest capability is lastCap (LastCapability): the capability names
// become masks, the rlimit names resources. The agent does it, once per
// process, so that the helper neither reads /proc nor looks up names.
func ProcessOf(p *specs.Process, lastCap int) (Process, error) {
	if p == nil {
		return Process{}, fmt.Errorf("no process")
	}
	out := Process{
		Args: p.Args, Env: p.Env, Cwd: p.Cwd,
		UID: p.User.UID, GID: p.User.GID, AdditionalGids: p.User.AdditionalGids, Umask: p.User.Umask,
		// config.md "capabilities": "an object containing arrays that
		// specifies the sets of capabilities for the process."
		Caps: computeCapSets(p.Capabilities, lastCap), LastCap: lastCap,
		OOMScoreAdj: p.OOMScoreAdj, NoNewPrivileges: p.NoNewPrivileges,
	}
	for _, r := range p.Rlimits {
		res, ok := RlimitResources[r.Type]
		if !ok {
			return Process{}, fmt.Errorf("rlimit %q is not a Linux resource limit", r.Type)
		}
		out.Rlimits = append(out.Rlimits, Rlimit{Type: r.Type, Resource: res, Soft: r.Soft, Hard: r.Hard})
	}
	return out, nil
}
