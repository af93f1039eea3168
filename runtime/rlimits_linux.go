package runtime

import (
	"slices"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// getrlimit is unix.Getrlimit; tests replace it.
var getrlimit = unix.Getrlimit

// guestNrOpen is the guest kernel's fs.nr_open (its default), above which
// it refuses an RLIMIT_NOFILE: a host that raised its own (systemd sets
// 2^30 - 8 for services such as containerd) would make every container
// fail, so an inherited NOFILE is capped to it.
const guestNrOpen = 1 << 20

// withInheritedRlimits is p with a limit for every resource p.rlimits does
// not name: the calling process's own, which is what the process would
// inherit under runc (config.md leaves limits the spec does not set to the
// runtime; runc's container process inherits them from runc, that is from
// containerd's shim or conmon). A VM's processes would otherwise start
// with the guest kernel's defaults (1024 open files where containerd gives
// its containers its own, much higher, limit). Go raises its own soft
// RLIMIT_NOFILE to the hard limit at start, so an inherited NOFILE reads
// soft = hard; it is capped to the guest's fs.nr_open. A resource that
// cannot be read is left to the guest.
func withInheritedRlimits(p *specs.Process) *specs.Process {
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(procinit.RlimitResources))
	for name := range procinit.RlimitResources {
		names = append(names, name)
	}
	sort.Strings(names)
	out := *p
	out.Rlimits = slices.Clone(p.Rlimits)
	for _, name := range names {
		if slices.ContainsFunc(p.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == name }) {
			continue
		}
		var lim unix.Rlimit
		if err := getrlimit(procinit.RlimitResources[name], &lim); err != nil {
			continue
		}
		if name == "RLIMIT_NOFILE" {
			lim.Cur, lim.Max = min(lim.Cur, guestNrOpen), min(lim.Max, guestNrOpen)
		}
		out.Rlimits = append(out.Rlimits, specs.POSIXRlimit{Type: name, Soft: lim.Cur, Hard: lim.Max})
	}
	return &out
}
