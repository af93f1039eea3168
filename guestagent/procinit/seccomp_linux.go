package procinit

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxSeccompInstructions is the kernel's BPF_MAXINSNS for a filter.
const MaxSeccompInstructions = 4096

// installSeccomp installs prog (the host-compiled sock_filter array,
// little-endian) on the calling thread, the one that execs (config-
// linux.md seccomp; the helper's other threads end with the exec).
func installSeccomp(prog []byte, flags uint32) error {
	n := len(prog) / 8
	if n == 0 || len(prog)%8 != 0 || n > MaxSeccompInstructions {
		return fmt.Errorf("seccomp program of %d bytes: want 1 to %d whole 8-byte instructions", len(prog), MaxSeccompInstructions)
	}
	filter := make([]unix.SockFilter, n)
	for i := range filter {
		b := prog[8*i:]
		filter[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.LittleEndian.Uint32(b[4:])}
	}
	fprog := unix.SockFprog{Len: uint16(n), Filter: &filter[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("installing the seccomp filter (%d instructions, flags %#x): %w", n, flags, errno)
	}
	return nil
}
