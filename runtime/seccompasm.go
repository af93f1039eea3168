package runtime

import (
	"fmt"
	"math"
	"sort"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
)

// The seccomp program: for each architecture the profile covers (x86_64,
// and i386 when it lists SCMP_ARCH_X86, as podman's and containerd's
// defaults do: 32-bit programs' calls go by their own numbers), a binary
// search on the system call number (assemblePart), then the number's rules,
// one block per alternative of its conditions, in libseccomp's action
// precedence (the most restrictive of the rules that match wins), then the
// default action.

// Offsets in struct seccomp_data, and the size of an argument.
const (
	seccompNrOffset   = 0
	seccompArchOffset = 4
	seccompArgsOffset = 16
)

// x32Bit marks the system calls of the x32 ABI (x86_64's with 32-bit
// pointers), which fail with ENOSYS whatever the profile.
const x32Bit = 0x40000000

// archRule is one system call, one alternative of its conditions, and its
// action.
type archRule struct {
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

// archRules are the profile's rules for one architecture's system call
// table (names it does not have are skipped), in precedence order.
func archRules(rules []seccompRule, names map[string]int) []archRule {
	var out []archRule
	for _, r := range rules {
		alts := r.alts
		if !r.hasArgs {
			alts = []seccomp.ArgumentConditions{nil}
		}
		for _, name := range r.names {
			nr, ok := names[name]
			if !ok {
				continue
			}
			for _, c := range alts {
				out = append(out, archRule{nr: uint32(nr), conds: c, action: r.action})
			}
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		return seccompActionRank(out[a].action) < seccompActionRank(out[b].action)
	})
	return out
}

// failSkip marks a jump to be pointed past its block's return (its
// condition does not hold).
const failSkip = -1

// condStep is one instruction of a condition; a jump's skip on true is
// failSkip or a count of instructions inside the condition.
type condStep struct {
	load bool
	off  uint32 // a load's offset
	test bpf.JumpTest
	val  uint32
	skip int
}

func ldArg(arg uint32, hi bool) condStep {
	off := seccompArgsOffset + 8*arg
	if hi {
		off += 4 // little endian: the high word second
	}
	return condStep{load: true, off: off}
}

func jmp(test bpf.JumpTest, val uint32, skip int) condStep {
	return condStep{test: test, val: val, skip: skip}
}

// conditionSteps is condition c as steps that fall through when it holds
// and jump past the block when it does not. wide compares all 64 bits (an
// x86_64 task's arguments), else the low word (the kernel zero-extends a
// 32-bit task's). never: it cannot hold; no steps and not never: it always
// holds.
func conditionSteps(c seccomp.Condition, wide bool) (steps []condStep, never bool) {
	lo, hi := uint32(c.Value), uint32(c.Value>>32)
	a := c.Argument
	if !wide {
		var fails bpf.JumpTest // taken when the condition fails
		switch c.Operation {
		case seccomp.Equal:
			if hi != 0 {
				return nil, true
			}
			fails = bpf.JumpNotEqual
		case seccomp.NotEqual:
			if hi != 0 {
				return nil, false
			}
			fails = bpf.JumpEqual
		case seccomp.LessThan, seccomp.LessOrEqual:
			if hi != 0 {
				return nil, false
			}
			fails = map[seccomp.Operation]bpf.JumpTest{seccomp.LessThan: bpf.JumpGreaterOrEqual, seccomp.LessOrEqual: bpf.JumpGreaterThan}[c.Operation]
		case seccomp.GreaterThan, seccomp.GreaterOrEqual:
			if hi != 0 {
				return nil, true
			}
			fails = map[seccomp.Operation]bpf.JumpTest{seccomp.GreaterThan: bpf.JumpLessOrEqual, seccomp.GreaterOrEqual: bpf.JumpLessThan}[c.Operation]
		case seccomp.BitsSet: // some bit of the value set
			if lo == 0 {
				return nil, true
			}
			fails = bpf.JumpBitsNotSet
		case seccomp.BitsNotSet: // no bit of the value set
			if lo == 0 {
				return nil, false
			}
			fails = bpf.JumpBitsSet
		default:
			return nil, true
		}
		return []condStep{ldArg(a, false), jmp(fails, lo, failSkip)}, false
	}
	// 64 bits: the high words decide unless they are equal.
	ordered := func(above, failLo bpf.JumpTest) []condStep {
		return []condStep{ldArg(a, true), jmp(above, hi, 3), jmp(bpf.JumpNotEqual, hi, failSkip), ldArg(a, false), jmp(failLo, lo, failSkip)}
	}
	switch c.Operation {
	case seccomp.Equal:
		return []condStep{ldArg(a, true), jmp(bpf.JumpNotEqual, hi, failSkip), ldArg(a, false), jmp(bpf.JumpNotEqual, lo, failSkip)}, false
	case seccomp.NotEqual:
		return []condStep{ldArg(a, true), jmp(bpf.JumpNotEqual, hi, 2), ldArg(a, false), jmp(bpf.JumpEqual, lo, failSkip)}, false
	case seccomp.GreaterThan:
		return ordered(bpf.JumpGreaterThan, bpf.JumpLessOrEqual), false
	case seccomp.GreaterOrEqual:
		return ordered(bpf.JumpGreaterThan, bpf.JumpLessThan), false
	case seccomp.LessThan:
		return ordered(bpf.JumpLessThan, bpf.JumpGreaterOrEqual), false
	case seccomp.LessOrEqual:
		return ordered(bpf.JumpLessThan, bpf.JumpGreaterThan), false
	case seccomp.BitsSet: // some bit of the value set
		switch {
		case hi == 0 && lo == 0:
			return nil, true
		case hi == 0:
			return []condStep{ldArg(a, false), jmp(bpf.JumpBitsNotSet, lo, failSkip)}, false
		case lo == 0:
			return []condStep{ldArg(a, true), jmp(bpf.JumpBitsNotSet, hi, failSkip)}, false
		}
		return []condStep{ldArg(a, true), jmp(bpf.JumpBitsSet, hi, 2), ldArg(a, false), jmp(bpf.JumpBitsNotSet, lo, failSkip)}, false
	case seccomp.BitsNotSet: // no bit of the value set
		var steps []condStep
		if hi != 0 {
			steps = append(steps, ldArg(a, true), jmp(bpf.JumpBitsSet, hi, failSkip))
		}
		if lo != 0 {
			steps = append(steps, ldArg(a, false), jmp(bpf.JumpBitsSet, lo, failSkip))
		}
		return steps, false
	}
	return nil, true
}

// assemblePart assembles one architecture's rules; the part ends in the
// default action def for a call no rule decides. It expects the system
// call number in the accumulator.
//
// A rule decides only calls of its own number, so rules of different
// numbers never interact, and a number's rules keep their precedence order
// among themselves (a rule without conditions ends its number's list).
// The numbers are split into intervals whose calls all get the same code
// (runs of numbers one action takes unconditionally, the gaps between
// listed numbers, which get def, and each number with conditions alone),
// and a binary search over the intervals' starts picks the code: a call
// runs about log2(intervals) comparisons instead of one per rule before
// its own, and so does the kernel, which runs the program once per system
// call number when the filter is installed, to find the calls it allows
// whatever their arguments (and then lets them through without running
// the filter).
func assemblePart(rules []archRule, def seccomp.Action, wide bool) ([]bpf.Instruction, error) {
	byNr := map[uint32][]archRule{}
	var nrs []uint32
	for _, r := range rules {
		if _, ok := byNr[r.nr]; !ok {
			nrs = append(nrs, r.nr)
		}
		byNr[r.nr] = append(byNr[r.nr], r)
	}
	sort.Slice(nrs, func(a, b int) bool { return nrs[a] < nrs[b] })

	// interval is the numbers from lo up to the next interval's lo; simple
	// is true when its code is one return of action.
	type interval struct {
		lo     uint32
		simple bool
		action seccomp.Action
		code   []bpf.Instruction
	}
	var ivs []interval
	add := func(iv interval) {
		if n := len(ivs); n > 0 && iv.simple && ivs[n-1].simple && ivs[n-1].action == iv.action {
			return // the same code as the interval before: one interval
		}
		if iv.simple {
			iv.code = []bpf.Instruction{bpf.RetConstant{Val: uint32(iv.action)}}
		}
		ivs = append(ivs, iv)
	}
	// next is the first number no interval covers yet: the numbers
	// before, between and after the listed ones get def.
	var next uint64
	for _, nr := range nrs {
		code, action, simple, err := numberCode(byNr[nr], def, wide)
		if err != nil {
			return nil, err
		}
		if uint64(nr) > next {
			add(interval{lo: uint32(next), simple: true, action: def})
		}
		add(interval{lo: nr, simple: simple, action: action, code: code})
		next = uint64(nr) + 1
	}
	if next <= math.MaxUint32 {
		add(interval{lo: uint32(next), simple: true, action: def})
	}
	return searchIntervals(len(ivs), func(i int) uint32 { return ivs[i].lo }, func(i int) []bpf.Instruction { return ivs[i].code }), nil
}

// numberCode is the code of one system call number's rules (in precedence
// order): each rule's conditions, failing to the next rule, then its
// action; def when none holds. simple: the code is a return of action,
// whatever the arguments.
func numberCode(rules []archRule, def seccomp.Action, wide bool) (code []bpf.Instruction, action seccomp.Action, simple bool, err error) {
	for _, r := range rules {
		var steps []condStep
		never := false
		for _, c := range r.conds {
			s, nv := conditionSteps(c, wide)
			never = never || nv
			steps = append(steps, s...)
		}
		if never {
			continue
		}
		if len(steps) == 0 {
			// It always holds: the rules after it are never reached.
			if len(code) == 0 {
				return nil, r.action, true, nil
			}
			return append(code, bpf.RetConstant{Val: uint32(r.action)}), 0, false, nil
		}
		// Each condition skips the rest of the rule unless it holds.
		end := len(steps) + 1 // past the return, from the rule's start
		if end > 256 {
			return nil, 0, false, fmt.Errorf("linux.seccomp: a rule of system call %d has too many conditions", r.nr)
		}
		for i, st := range steps {
			if st.load {
				code = append(code, bpf.LoadAbsolute{Off: st.off, Size: 4})
				continue
			}
			skip := st.skip
			if skip == failSkip {
				skip = end - i - 1
			}
			code = append(code, bpf.JumpIf{Cond: st.test, Val: st.val, SkipTrue: uint8(skip)})
		}
		code = append(code, bpf.RetConstant{Val: uint32(r.action)})
	}
	if len(code) == 0 {
		return nil, def, true, nil
	}
	return append(code, bpf.RetConstant{Val: uint32(def)}), 0, false, nil
}

// searchIntervals is a binary search over n intervals, the ith starting at
// lo(i) (lo(0) is 0, the starts ascending), that runs the code of the one
// the accumulator falls in. A conditional jump reaches at most 255
// instructions ahead; past that a JA takes the far branch.
func searchIntervals(n int, lo func(int) uint32, code func(int) []bpf.Instruction) []bpf.Instruction {
	var emit func(i, j int) []bpf.Instruction
	emit = func(i, j int) []bpf.Instruction {
		if j-i == 1 {
			return code(i)
		}
		mid := (i + j) / 2
		left, right := emit(i, mid), emit(mid, j)
		var out []bpf.Instruction
		if len(left) <= 255 {
			out = append(out, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: lo(mid), SkipTrue: uint8(len(left))})
		} else {
			out = append(out,
				bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: lo(mid), SkipFalse: 1},
				bpf.Jump{Skip: uint32(len(left))})
		}
		out = append(out, left...)
		return append(out, right...)
	}
	return emit(0, n)
}

// seccompAssemble is the whole program: the architecture check, x86_64's
// part (x32 calls refused) and, with i386, i386's part. Any other
// architecture gets the default action.
func seccompAssemble(rules []seccompRule, def seccomp.Action, i386 bool) ([]bpf.Instruction, error) {
	x86, err := assemblePart(archRules(rules, arch.X86_64.SyscallNames), def, true)
	if err != nil {
		return nil, err
	}
	var i386Insts []bpf.Instruction
	if i386 {
		if i386Insts, err = assemblePart(archRules(rules, arch.I386.SyscallNames), def, false); err != nil {
			return nil, err
		}
		// Its part expects nr loaded.
		i386Insts = append([]bpf.Instruction{bpf.LoadAbsolute{Off: seccompNrOffset, Size: 4}}, i386Insts...)
	}
	out := []bpf.Instruction{bpf.LoadAbsolute{Off: seccompArchOffset, Size: 4}}
	x86Head := []bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompNrOffset, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: x32Bit, SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionErrno | 38)}, // ENOSYS
	}
	if i386 {
		// arch == i386: jump over x86_64's check and part.
		out = append(out,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(arch.I386.ID), SkipFalse: 1},
			bpf.Jump{Skip: uint32(2 + len(x86Head) + len(x86))},
		)
	}
	out = append(out,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(arch.X86_64.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(def)},
	)
	out = append(out, x86Head...)
	out = append(out, x86...)
	return append(out, i386Insts...), nil
}
