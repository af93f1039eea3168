package runtime

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	seccomp "github.com/elastic/go-seccomp-bpf"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
)

// The spec's seccomp profile is compiled on the host into the classic BPF
// program the guest kernel (x86_64) runs, and the agent's helper installs it
// before the process's execve (config-linux.md seccomp). The program is
// assembled here (seccompasm.go), with github.com/elastic/go-seccomp-bpf's
// system call tables and action values (its own compiler lets a rule with
// conditions leave an argument where the next rule expects the system call
// number: under podman's profile every socket(2) got ENOSYS). How
// libseccomp's behaviour is met:
//   - unknown syscall names are skipped (libseccomp resolves names per
//     architecture; profiles list other architectures' names);
//   - SCMP_CMP_MASKED_EQ (arg & value == valueTwo) becomes "every bit of
//     valueTwo set" and "no other bit of value set";
//   - when several rules match a call, the most restrictive action wins;
//   - x86_64's calls are filtered, and i386's by their own numbers when the
//     profile lists SCMP_ARCH_X86; x32 calls (the x86_64 ABI with 32-bit
//     pointers) fail with ENOSYS whatever the profile; any other
//     architecture gets the default action.
// Not supported (an error names them): SCMP_ACT_NOTIFY and listenerPath.

// seccompFlags are the spec's flags the kernel takes
// (SECCOMP_FILTER_FLAG_*).
var seccompFlags = map[specs.LinuxSeccompFlag]uint32{
	"SECCOMP_FILTER_FLAG_TSYNC":            1 << 0,
	specs.LinuxSeccompFlagLog:              1 << 1,
	specs.LinuxSeccompFlagSpecAllow:        1 << 2,
	"SECCOMP_FILTER_FLAG_TSYNC_ESRCH":      1 << 4,
	specs.LinuxSeccompFlagWaitKillableRecv: 1 << 5,
}

// defaultErrno is errnoRet's and defaultErrnoRet's default (EPERM).
const defaultErrno = 1

// guestSeccomp is the program and flags of spec s's profile (nil: none).
func guestSeccomp(s *specs.Spec) ([]byte, uint32, error) {
	if s.Linux == nil {
		return nil, 0, nil
	}
	return seccompProgram(s.Linux.Seccomp)
}

// seccompProgram compiles profile s into the guest's program, as the
// kernel's sock_filter array, and its flags; nil for no profile.
func seccompProgram(s *specs.LinuxSeccomp) ([]byte, uint32, error) {
	if s == nil {
		return nil, 0, nil
	}
	if s.ListenerPath != "" {
		return nil, 0, fmt.Errorf("linux.seccomp.listenerPath %q: seccomp user notification is not supported", s.ListenerPath)
	}
	var flags uint32
	for _, f := range s.Flags {
		v, ok := seccompFlags[f]
		if !ok {
			return nil, 0, fmt.Errorf("linux.seccomp.flags: unknown flag %q", f)
		}
		flags |= v
	}
	def, err := seccompAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, 0, fmt.Errorf("linux.seccomp.defaultAction: %w", err)
	}
	rules, err := seccompRules(s)
	if err != nil {
		return nil, 0, err
	}
	insts, err := seccompAssemble(rules, def, slices.Contains(s.Architectures, specs.ArchX86))
	if err != nil {
		return nil, 0, err
	}
	// The kernel's BPF_MAXINSNS.
	if len(insts) > 4096 {
		return nil, 0, fmt.Errorf("linux.seccomp: the compiled program has %d instructions, more than the kernel's 4096", len(insts))
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, 0, fmt.Errorf("linux.seccomp: assembling the program: %w", err)
	}
	out := make([]byte, 0, 8*len(raw))
	for _, r := range raw {
		out = binary.LittleEndian.AppendUint16(out, r.Op)
		out = append(out, r.Jt, r.Jf)
		out = binary.LittleEndian.AppendUint32(out, r.K)
	}
	return out, flags, nil
}

// seccompRule is one of the profile's syscall rules, read once for every
// architecture compiled: its action and, when it has args, the
// alternatives of its conditions (none: it can never hold).
type seccompRule struct {
	names   []string
	action  seccomp.Action
	hasArgs bool
	alts    []seccomp.ArgumentConditions
}

// seccompRules reads profile s's syscall rules; a rule's action or args
// that cannot be honoured are an error naming the rule.
func seccompRules(s *specs.LinuxSeccomp) ([]seccompRule, error) {
	rules := make([]seccompRule, 0, len(s.Syscalls))
	for i, sc := range s.Syscalls {
		act, err := seccompAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("linux.seccomp.syscalls[%d]: %w", i, err)
		}
		r := seccompRule{names: sc.Names, action: act, hasArgs: len(sc.Args) > 0}
		if r.hasArgs {
			if r.alts, err = seccompConditions(sc.Args); err != nil {
				return nil, fmt.Errorf("linux.seccomp.syscalls[%d]: %w", i, err)
			}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// seccompAction is the kernel's return value of action a (errno: its
// errno, EPERM by default).
func seccompAction(a specs.LinuxSeccompAction, errno *uint) (seccomp.Action, error) {
	switch a {
	case specs.ActAllow:
		return seccomp.ActionAllow, nil
	case specs.ActKill, specs.ActKillThread:
		return seccomp.ActionKillThread, nil
	case specs.ActKillProcess:
		return seccomp.ActionKillProcess, nil
	case specs.ActTrap:
		return seccomp.ActionTrap, nil
	case specs.ActLog:
		return seccomp.ActionLog, nil
	case specs.ActErrno, specs.ActTrace:
		base, e := seccomp.ActionErrno, uint(defaultErrno)
		if a == specs.ActTrace {
			base, e = seccomp.ActionTrace, 0
		}
		if errno != nil {
			e = *errno
		}
		if e > 0xffff {
			return 0, fmt.Errorf("%s: errnoRet %d does not fit 16 bits", a, e)
		}
		return base | seccomp.Action(e), nil
	}
	return 0, fmt.Errorf("action %q is not supported", a)
}

// seccompConditions turns a rule's args into alternatives, each a set of
// conditions that must all hold: runc's reading, where args on distinct
// indexes must all match and args repeating an index are alternatives.
func seccompConditions(args []specs.LinuxSeccompArg) ([]seccomp.ArgumentConditions, error) {
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
	}
	var all seccomp.ArgumentConditions
	var alts []seccomp.ArgumentConditions
	for _, a := range args {
		c, err := seccompCondition(a)
		if err != nil {
			return nil, err
		}
		if c == nil {
			// Can never hold (MASKED_EQ with bits outside the mask).
			if !repeated {
				return nil, nil
			}
			continue
		}
		if repeated {
			alts = append(alts, c)
		} else {
			all = append(all, c...)
		}
	}
	if !repeated {
		alts = []seccomp.ArgumentConditions{all}
	}
	return alts, nil
}

// seccompCondition is one arg comparison as conditions that must all hold;
// nil when it can never hold.
func seccompCondition(a specs.LinuxSeccompArg) (seccomp.ArgumentConditions, error) {
	if a.Index > 5 {
		return nil, fmt.Errorf("arg index %d: system calls have 6 arguments", a.Index)
	}
	ops := map[specs.LinuxSeccompOperator]seccomp.Operation{
		specs.OpNotEqual: seccomp.NotEqual, specs.OpLessThan: seccomp.LessThan,
		specs.OpLessEqual: seccomp.LessOrEqual, specs.OpEqualTo: seccomp.Equal,
		specs.OpGreaterEqual: seccomp.GreaterOrEqual, specs.OpGreaterThan: seccomp.GreaterThan,
	}
	if op, ok := ops[a.Op]; ok {
		return seccomp.ArgumentConditions{{Argument: uint32(a.Index), Operation: op, Value: a.Value}}, nil
	}
	if a.Op != specs.OpMaskedEqual {
		return nil, fmt.Errorf("arg operator %q is not supported", a.Op)
	}
	mask, want := a.Value, a.ValueTwo
	if want&^mask != 0 {
		return nil, nil
	}
	var cs seccomp.ArgumentConditions
	for rest := want; rest != 0; rest &= rest - 1 {
		bit := uint64(1) << bits.TrailingZeros64(rest)
		cs = append(cs, seccomp.Condition{Argument: uint32(a.Index), Operation: seccomp.BitsSet, Value: bit})
	}
	if other := mask &^ want; other != 0 {
		cs = append(cs, seccomp.Condition{Argument: uint32(a.Index), Operation: seccomp.BitsNotSet, Value: other})
	}
	if len(cs) == 0 {
		// A zero mask: always (arg & 0 == 0).
		cs = seccomp.ArgumentConditions{{Argument: uint32(a.Index), Operation: seccomp.BitsNotSet, Value: 0}}
	}
	return cs, nil
}
