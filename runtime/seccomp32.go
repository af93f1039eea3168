package runtime

import (
	"fmt"
	"sort"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

// The i386 part of a seccomp program. go-seccomp-bpf compiles for the host's
// architecture only (x86_64), but a profile that lists SCMP_ARCH_X86, as
// podman's and containerd's defaults do, filters the system calls of 32-bit
// programs (int 0x80) by their own numbers: without a part of their own
// they would all get the default action, and a 32-bit program would not
// even start under a default of ERRNO. This part is a plain list, one block
// per system call and alternative, in libseccomp's action precedence.

// Offsets in struct seccomp_data, and the size of an argument.
const (
	seccompNrOffset   = 0
	seccompArchOffset = 4
	seccompArgsOffset = 16
)

// i386Rule is one system call, one alternative of its conditions, and
// its action.
type i386Rule struct {
	nr     uint32
	conds  seccomp.ArgumentConditions
	action seccomp.Action
}

// seccompActionRank orders actions as libseccomp does when several rules
// match one call: the most restrictive wins.
func seccompActionRank(a seccomp.Action) int {
	switch a & seccomp.Action(0xffff0000) {
	case seccomp.ActionKillProcess:
		return 0
	case seccomp.ActionKillThread:
		return 1
	case seccomp.ActionTrap:
		return 2
	case seccomp.ActionErrno:
		return 3
	case seccomp.ActionTrace:
		return 4
	case seccomp.ActionLog:
		return 5
	}
	return 6 // allow
}

// i386Rules are the profile's rules for i386 system calls (names i386 does
// not have are skipped), in precedence order.
func i386Rules(rules []seccompRule) []i386Rule {
	var out []i386Rule
	for _, r := range rules {
		alts := r.alts
		if !r.hasArgs {
			alts = []seccomp.ArgumentConditions{nil}
		}
		for _, name := range r.names {
			nr, ok := arch.I386.SyscallNames[name]
			if !ok {
				continue
			}
			for _, c := range alts {
				out = append(out, i386Rule{nr: uint32(nr), conds: c, action: r.action})
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		return seccompActionRank(out[a].action) < seccompActionRank(out[b].action)
	})
	return out
}

// i386Condition is condition c on a 32-bit argument (its low word; the
// kernel zero-extends a 32-bit task's arguments) as the instructions that
// jump skip instructions ahead when it does not hold; never: it cannot
// hold; nil instructions and not never: it always holds.
func i386Condition(c seccomp.Condition, skip int) (insts []bpf.Instruction, never bool) {
	lo, hi := uint32(c.Value), uint32(c.Value>>32)
	var jump bpf.JumpTest // taken when the condition fails
	switch c.Operation {
	case seccomp.Equal:
		if hi != 0 {
			return nil, true
		}
		jump = bpf.JumpNotEqual
	case seccomp.NotEqual:
		if hi != 0 {
			return nil, false
		}
		jump = bpf.JumpEqual
	case seccomp.LessThan, seccomp.LessOrEqual:
		if hi != 0 {
			return nil, false
		}
		jump = map[seccomp.Operation]bpf.JumpTest{seccomp.LessThan: bpf.JumpGreaterOrEqual, seccomp.LessOrEqual: bpf.JumpGreaterThan}[c.Operation]
	case seccomp.GreaterThan, seccomp.GreaterOrEqual:
		if hi != 0 {
			return nil, true
		}
		jump = map[seccomp.Operation]bpf.JumpTest{seccomp.GreaterThan: bpf.JumpLessOrEqual, seccomp.GreaterOrEqual: bpf.JumpLessThan}[c.Operation]
	case seccomp.BitsSet: // some bit of the value set
		if lo == 0 {
			return nil, true
		}
		jump = bpf.JumpBitsNotSet
	case seccomp.BitsNotSet: // no bit of the value set
		if lo == 0 {
			return nil, false
		}
		jump = bpf.JumpBitsSet
	default:
		return nil, true
	}
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompArgsOffset + 8*c.Argument, Size: 4},
		bpf.JumpIf{Cond: jump, Val: lo, SkipTrue: uint8(skip)},
	}, false
}

// i386Part assembles rules into the i386 part of a program, which ends with
// the default action def.
func i386Part(rules []i386Rule, def seccomp.Action) ([]bpf.Instruction, error) {
	var out []bpf.Instruction
	nrLoaded := false
	for _, r := range rules {
		// The block: load nr (unless the accumulator holds it), skip the
		// block unless it is r's; each condition skips the rest unless it
		// holds; return the action.
		var conds []seccomp.Condition
		never := false
		for _, c := range r.conds {
			if insts, nv := i386Condition(c, 0); nv {
				never = true
			} else if insts != nil {
				conds = append(conds, c)
			}
		}
		if never {
			continue
		}
		n := 2*len(conds) + 1 // the conditions and the return
		var block []bpf.Instruction
		if !nrLoaded {
			block = append(block, bpf.LoadAbsolute{Off: seccompNrOffset, Size: 4})
		}
		block = append(block, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: r.nr, SkipTrue: uint8(n)})
		for i, c := range conds {
			insts, _ := i386Condition(c, n-2*i-2)
			block = append(block, insts...)
		}
		block = append(block, bpf.RetConstant{Val: uint32(r.action)})
		if n > 255 {
			return nil, fmt.Errorf("linux.seccomp: a rule of system call %d has too many conditions", r.nr)
		}
		out = append(out, block...)
		// Past a block, the accumulator holds nr only if the block loaded
		// no argument.
		nrLoaded = len(conds) == 0
	}
	return append(out, bpf.RetConstant{Val: uint32(def)}), nil
}

// withI386 puts the i386 part before x86_64's program (go-seccomp-bpf's,
// which checks for x86_64 itself and returns its default otherwise): calls
// of i386 jump to their part, all others go on to x86_64's.
func withI386(x86 []bpf.Instruction, i386 []bpf.Instruction) []bpf.Instruction {
	out := make([]bpf.Instruction, 0, 3+len(x86)+len(i386))
	out = append(out,
		bpf.LoadAbsolute{Off: seccompArchOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(arch.I386.ID), SkipFalse: 1},
		bpf.Jump{Skip: uint32(len(x86))},
	)
	out = append(out, x86...)
	return append(out, i386...)
}
