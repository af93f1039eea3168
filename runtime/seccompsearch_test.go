package runtime

import (
	"encoding/binary"
	"math/bits"
	"sort"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// holds evaluates condition c on a 64-bit argument vector as the kernel
// compares an x86_64 task's arguments.
func holds(c seccomp.Condition, args [6]uint64) bool {
	a, v := args[c.Argument], c.Value
	switch c.Operation {
	case seccomp.Equal:
		return a == v
	case seccomp.NotEqual:
		return a != v
	case seccomp.LessThan:
		return a < v
	case seccomp.LessOrEqual:
		return a <= v
	case seccomp.GreaterThan:
		return a > v
	case seccomp.GreaterOrEqual:
		return a >= v
	case seccomp.BitsSet:
		return a&v != 0
	case seccomp.BitsNotSet:
		return a&v == 0
	}
	return false
}

// expectedAction is what the profile's rules (archRules: expanded per
// number, in precedence order) give call nr with args: the first rule of
// nr whose conditions all hold, else def. It reads the rules directly, not
// the program.
func expectedAction(rules []archRule, def seccomp.Action, nr uint32, args [6]uint64) uint32 {
	for _, r := range rules {
		if r.nr != nr {
			continue
		}
		ok := true
		for _, c := range r.conds {
			ok = ok && holds(c, args)
		}
		if ok {
			return uint32(r.action)
		}
	}
	return uint32(def)
}

// constAllowSteps runs prog for call nr of architecture archID as the
// kernel does when a filter is attached (kernel/seccomp.c,
// seccomp_is_const_allow): only the number and architecture may be
// loaded. It returns whether the call is allowed whatever its arguments,
// whether that could be decided, and how many instructions it ran.
func constAllowSteps(t *testing.T, prog []byte, archID, nr uint32) (allow, decided bool, steps int) {
	t.Helper()
	var acc uint32
	for pc := 0; pc < len(prog)/8; pc++ {
		steps++
		ins := prog[8*pc:]
		code, jt, jf, k := binary.LittleEndian.Uint16(ins), int(ins[2]), int(ins[3]), binary.LittleEndian.Uint32(ins[4:])
		switch code {
		case 0x20: // BPF_LD|BPF_W|BPF_ABS
			switch k {
			case seccompNrOffset:
				acc = nr
			case seccompArchOffset:
				acc = archID
			default:
				return false, false, steps // an argument: not constant
			}
		case 0x06: // BPF_RET|BPF_K
			return k == uint32(seccomp.ActionAllow), true, steps
		case 0x05: // BPF_JMP|BPF_JA
			pc += int(k)
		case 0x15, 0x35, 0x25, 0x45: // JEQ, JGE, JGT, JSET with K
			var res bool
			switch code {
			case 0x15:
				res = acc == k
			case 0x35:
				res = acc >= k
			case 0x25:
				res = acc > k
			case 0x45:
				res = acc&k != 0
			}
			if res {
				pc += jt
			} else {
				pc += jf
			}
		case 0x54: // BPF_ALU|BPF_AND|BPF_K
			acc &= k
		default:
			t.Fatalf("instruction %d: code %#x, which the kernel's constant-action check does not know", pc, code)
		}
	}
	t.Fatal("ran off the end of the program")
	return false, false, steps
}

// TestSeccompSearch: with a profile shaped like podman's (most calls
// allowed, some with conditions, a few refused or killed), every x86_64
// and i386 call gets what the rules say for several argument vectors; a call the
// profile allows unconditionally is found allowed by the kernel's
// attach-time check, within a binary search's steps (the old plain list
// ran one block per rule before the call's own).
func TestSeccompSearch(t *testing.T) {
	var names []string
	for n := range arch.X86_64.SyscallNames {
		names = append(names, n)
	}
	sort.Strings(names)
	refused := map[string]bool{"mount": true, "reboot": true, "kexec_load": true, "init_module": true, "ptrace": true, "clone": true, "personality": true, "socket": true, "setns": true}
	var allowed []string
	for _, n := range names {
		if !refused[n] {
			allowed = append(allowed, n)
		}
	}
	profile := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: allowed, Action: specs.ActAllow},
			{Names: []string{"clone"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			{Names: []string{"personality"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}, {Index: 0, Value: 8, Op: specs.OpEqualTo}, {Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 40, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActAllow},
			{Names: []string{"ptrace"}, Action: specs.ActKillProcess},
			{Names: []string{"getpid", "getppid"}, Action: specs.ActLog},
		},
	}
	prog, _, err := seccompProgram(profile)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := seccompRules(profile)
	if err != nil {
		t.Fatal(err)
	}
	def := seccomp.ActionErrno | 1 // EPERM
	argSets := [][6]uint64{{}, {8}, {40, 1}, {0x7E020000}, {0x11, 0xffffffff00000000}, {0xffffffff}, {1 << 40}}
	for _, a := range []*arch.Info{arch.X86_64, arch.I386} {
		rules := archRules(parsed, a.SyscallNames)
		for name, nr := range a.SyscallNames {
			for _, args := range argSets {
				if a == arch.I386 {
					// A 32-bit task's arguments are zero-extended.
					for i := range args {
						args[i] &= 0xffffffff
					}
				}
				got := runSeccomp(t, prog, a, name, args[:]...)
				if want := expectedAction(rules, def, uint32(nr), args); got != want {
					t.Errorf("%s %s%v = %#x, want %#x", a.Name, name, args, got, want)
				}
			}
		}
	}
	// The kernel's attach-time walk: every unconditionally allowed call is
	// decided, in at most two instructions per level of the search and
	// the architecture checks.
	limit := 2*bits.Len(uint(len(names))) + 8
	for _, name := range allowed {
		nr := uint32(arch.X86_64.SyscallNames[name])
		if name == "getpid" || name == "getppid" {
			continue // logged: not an allow
		}
		allow, decided, steps := constAllowSteps(t, prog, uint32(arch.X86_64.ID), nr)
		if !allow || !decided {
			t.Errorf("%s: the kernel's attach-time check finds allow %v, decided %v; want an unconditional allow", name, allow, decided)
		}
		if steps > limit {
			t.Errorf("%s: %d instructions to its action, want at most %d (a binary search)", name, steps, limit)
		}
	}
	if _, decided, _ := constAllowSteps(t, prog, uint32(arch.X86_64.ID), uint32(arch.X86_64.SyscallNames["clone"])); decided {
		t.Error("clone, allowed only with some flags, was decided without its arguments")
	}
}
