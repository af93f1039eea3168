package runtime

import (
	"encoding/binary"
	"strings"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
)

// runSeccomp runs program prog (seccompProgram's) on system call name of
// architecture a with args, as the kernel would, and returns the action.
func runSeccomp(t *testing.T, prog []byte, a *arch.Info, name string, args ...uint64) uint32 {
	t.Helper()
	var raw []bpf.RawInstruction
	for i := 0; i < len(prog); i += 8 {
		raw = append(raw, bpf.RawInstruction{Op: binary.LittleEndian.Uint16(prog[i:]), Jt: prog[i+2], Jf: prog[i+3], K: binary.LittleEndian.Uint32(prog[i+4:])})
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	// struct seccomp_data: nr, arch, instruction_pointer, args[6].
	data := make([]byte, 64)
	nr, ok := a.SyscallNames[name]
	if !ok {
		t.Fatalf("%s has no system call %q", a.Name, name)
	}
	binary.LittleEndian.PutUint32(data[0:], uint32(nr))
	binary.LittleEndian.PutUint32(data[4:], uint32(a.ID))
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	// The VM reads words big-endian, as network packets: present the
	// data as the kernel's loads see it.
	for i := 0; i < len(data); i += 4 {
		binary.BigEndian.PutUint32(data[i:], binary.LittleEndian.Uint32(data[i:]))
	}
	ret, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(ret)
}

func TestSeccompProgram(t *testing.T) {
	u := func(v uint) *uint { return &v }
	errno := func(e uint32) uint32 { return uint32(seccomp.ActionErrno) | e }
	allow, enosys := uint32(seccomp.ActionAllow), errno(38)
	profile := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: u(38),
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			// _llseek is i386's: skipped on x86_64.
			{Names: []string{"read", "write", "exit_group", "_llseek"}, Action: specs.ActAllow},
			{Names: []string{"mkdir"}, Action: specs.ActErrno},
			// podman's clone rule: no namespace flags.
			{Names: []string{"clone"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			// personality(0) or personality(8): alternatives on one index.
			{Names: []string{"personality"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}, {Index: 0, Value: 8, Op: specs.OpEqualTo}}},
			// (arg1 & 0x3) == 0x2, and arg0 above 10.
			{Names: []string{"socket"}, Action: specs.ActKillProcess,
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: 3, ValueTwo: 2, Op: specs.OpMaskedEqual}, {Index: 0, Value: 10, Op: specs.OpGreaterThan}}},
		},
	}
	prog, flags, err := seccompProgram(profile)
	if err != nil {
		t.Fatal(err)
	}
	if flags != 0 || len(prog)%8 != 0 {
		t.Fatalf("flags %d, %d bytes", flags, len(prog))
	}
	for _, tc := range []struct {
		name string
		args []uint64
		want uint32
	}{
		{"read", nil, allow},
		{"getpid", nil, enosys},
		{"mkdir", nil, errno(1)},
		{"clone", []uint64{0x11}, allow},
		{"clone", []uint64{0x10000000}, enosys}, // CLONE_NEWUSER
		{"personality", []uint64{8}, allow},
		{"personality", []uint64{4}, enosys},
		{"socket", []uint64{11, 6}, uint32(seccomp.ActionKillProcess)},
		{"socket", []uint64{11, 7}, enosys},
		{"socket", []uint64{10, 6}, enosys},
		{"socket", []uint64{11, 1<<32 | 6}, uint32(seccomp.ActionKillProcess)},
	} {
		if got := runSeccomp(t, prog, arch.X86_64, tc.name, tc.args...); got != tc.want {
			t.Errorf("%s%v = %#x, want %#x", tc.name, tc.args, got, tc.want)
		}
	}
	// The profile lists SCMP_ARCH_X86: i386's calls, by i386's numbers,
	// get the same rules.
	for _, tc := range []struct {
		name string
		args []uint64
		want uint32
	}{
		{"read", nil, allow},
		{"_llseek", nil, allow}, // i386's own
		{"getpid", nil, enosys},
		{"mkdir", nil, errno(1)},
		{"clone", []uint64{0x11}, allow},
		{"clone", []uint64{0x10000000}, enosys},
		{"personality", []uint64{0}, allow},
		{"personality", []uint64{8}, allow},
		{"personality", []uint64{4}, enosys},
		{"socket", []uint64{11, 6}, uint32(seccomp.ActionKillProcess)},
		{"socket", []uint64{11, 7}, enosys},
		{"socket", []uint64{10, 6}, enosys},
	} {
		if got := runSeccomp(t, prog, arch.I386, tc.name, tc.args...); got != tc.want {
			t.Errorf("i386 %s%v = %#x, want %#x", tc.name, tc.args, got, tc.want)
		}
	}
	// Another architecture gets the default action.
	if got := runSeccomp(t, prog, arch.AARCH64, "read"); got != enosys {
		t.Errorf("an aarch64 call = %#x, want the default %#x", got, enosys)
	}
	// Without SCMP_ARCH_X86, i386's calls get the default action too.
	profile.Architectures = []specs.Arch{specs.ArchX86_64}
	if prog, _, err = seccompProgram(profile); err != nil {
		t.Fatal(err)
	}
	if got := runSeccomp(t, prog, arch.I386, "read"); got != enosys {
		t.Errorf("an i386 call without SCMP_ARCH_X86 = %#x, want the default %#x", got, enosys)
	}
}

// TestSeccompI386Precedence: when several rules match an i386 call, the
// most restrictive action wins, as in libseccomp.
func TestSeccompI386Precedence(t *testing.T) {
	profile := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "rmdir"}, Action: specs.ActAllow},
			{Names: []string{"mkdir"}, Action: specs.ActErrno},
			{Names: []string{"mkdir"}, Action: specs.ActLog},
			// A value above 32 bits: a 32-bit argument never equals it.
			{Names: []string{"rmdir"}, Action: specs.ActKillProcess,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1 << 33, Op: specs.OpEqualTo}}},
			{Names: []string{"dup"}, Action: specs.ActTrap,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1 << 33, Op: specs.OpLessThan}}},
		},
	}
	prog, _, err := seccompProgram(profile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []uint64
		want uint32
	}{
		{"mkdir", nil, uint32(seccomp.ActionErrno) | 1},
		{"rmdir", []uint64{0}, uint32(seccomp.ActionAllow)},
		{"dup", []uint64{5}, uint32(seccomp.ActionTrap)},
		{"getpid", nil, uint32(seccomp.ActionAllow)},
	} {
		if got := runSeccomp(t, prog, arch.I386, tc.name, tc.args...); got != tc.want {
			t.Errorf("i386 %s%v = %#x, want %#x", tc.name, tc.args, got, tc.want)
		}
	}
}

func TestSeccompProgramErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *specs.LinuxSeccomp
		want string
	}{
		{"notify", &specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, `action "SCMP_ACT_NOTIFY" is not supported`},
		{"listener", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/x.sock"}, "listenerPath"},
		{"flag", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"X"}}, `unknown flag "X"`},
		{"operator", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_X"}}}}}, `syscalls[0]: arg operator "SCMP_CMP_X"`},
		{"index", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "arg index 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := seccompProgram(tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
		})
	}
	if p, _, err := seccompProgram(nil); p != nil || err != nil {
		t.Errorf("no profile: %v, %v", p, err)
	}
}

// TestSeccompRulesAfterConditions: podman's socket rules, where a rule with
// conditions is followed by others on the same call. go-seccomp-bpf's own
// compiler left the argument it compared in the accumulator, and the next
// rule compared it with the system call number: every socket(2) got the
// default ENOSYS.
func TestSeccompRulesAfterConditions(t *testing.T) {
	u := func(v uint) *uint { return &v }
	profile := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: u(38),
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: u(22),
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 16, Op: specs.OpEqualTo}, {Index: 2, Value: 9, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 9, Op: specs.OpNotEqual}}},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 16, Op: specs.OpNotEqual}}},
			{Names: []string{"getpid"}, Action: specs.ActAllow},
		},
	}
	prog, _, err := seccompProgram(profile)
	if err != nil {
		t.Fatal(err)
	}
	allow, einval, enosys := uint32(seccomp.ActionAllow), uint32(seccomp.ActionErrno)|22, uint32(seccomp.ActionErrno)|38
	for _, a := range []*arch.Info{arch.X86_64, arch.I386} {
		for _, tc := range []struct {
			name string
			args []uint64
			want uint32
		}{
			{"socket", []uint64{1, 0x80801, 0}, allow},   // AF_UNIX
			{"socket", []uint64{2, 1, 0}, allow},         // AF_INET
			{"socket", []uint64{16, 0x80003, 15}, allow}, // netlink uevents
			{"socket", []uint64{16, 3, 9}, einval},       // netlink audit
			{"getpid", nil, allow},
			{"getppid", nil, enosys},
		} {
			if got := runSeccomp(t, prog, a, tc.name, tc.args...); got != tc.want {
				t.Errorf("%s %s%v = %#x, want %#x", a.Name, tc.name, tc.args, got, tc.want)
			}
		}
	}
}

// TestSeccompWideConditions: x86_64's comparisons take all 64 bits of an
// argument, both words deciding.
func TestSeccompWideConditions(t *testing.T) {
	const v = 5<<32 | 7
	for _, tc := range []struct {
		op   specs.LinuxSeccompOperator
		arg  uint64
		want bool
	}{
		{specs.OpEqualTo, v, true}, {specs.OpEqualTo, 7, false}, {specs.OpEqualTo, 5 << 32, false},
		{specs.OpNotEqual, v, false}, {specs.OpNotEqual, 7, true}, {specs.OpNotEqual, 6<<32 | 7, true},
		{specs.OpGreaterThan, v, false}, {specs.OpGreaterThan, v + 1, true}, {specs.OpGreaterThan, 6 << 32, true}, {specs.OpGreaterThan, 4<<32 | 9, false},
		{specs.OpGreaterEqual, v, true}, {specs.OpGreaterEqual, v - 1, false}, {specs.OpGreaterEqual, 6 << 32, true},
		{specs.OpLessThan, v, false}, {specs.OpLessThan, v - 1, true}, {specs.OpLessThan, 4<<32 | 9, true}, {specs.OpLessThan, 6 << 32, false},
		{specs.OpLessEqual, v, true}, {specs.OpLessEqual, v + 1, false}, {specs.OpLessEqual, 4<<32 | 9, true},
	} {
		profile := &specs.LinuxSeccomp{
			DefaultAction: specs.ActErrno,
			Architectures: []specs.Arch{specs.ArchX86_64},
			Syscalls: []specs.LinuxSyscall{
				{Names: []string{"prctl"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: v, Op: tc.op}}},
				{Names: []string{"getpid"}, Action: specs.ActAllow},
			},
		}
		prog, _, err := seccompProgram(profile)
		if err != nil {
			t.Fatal(err)
		}
		got := runSeccomp(t, prog, arch.X86_64, "prctl", 0, tc.arg) == uint32(seccomp.ActionAllow)
		if got != tc.want {
			t.Errorf("arg %#x %s %#x: %t, want %t", tc.arg, tc.op, uint64(v), got, tc.want)
		}
		// The rule after it still sees the system call number.
		if runSeccomp(t, prog, arch.X86_64, "getpid") != uint32(seccomp.ActionAllow) {
			t.Errorf("getpid after a %s rule is not allowed", tc.op)
		}
	}
}
