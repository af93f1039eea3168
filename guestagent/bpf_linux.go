package guestagent

import (
	"errors"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Thin wrappers of bpf(2) for cgroup device programs: what
// opencontainers/cgroups (which loads them) does not export.

// bpfCall is bpf(2) with cmd and attr.
func bpfCall(cmd uintptr, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if errno != 0 {
		return 0, os.NewSyscallError("bpf", errno)
	}
	return r, nil
}

// bpfDeviceProgIDs are the ids of the device programs attached to the
// cgroup of dirFd (at most 64, the kernel's limit per cgroup).
func bpfDeviceProgIDs(dirFd int) ([]uint32, error) {
	// bpf_attr's query member whole: kernels 6.17 to 7.1 write its
	// revision field whatever size is passed.
	type query struct {
		targetFd        uint32
		attachType      uint32
		queryFlags      uint32
		attachFlags     uint32
		progIDs         uint64
		progCnt         uint32
		_               uint32
		progAttachFlags uint64
		linkIDs         uint64
		linkAttachFlags uint64
		revision        uint64
	}
	ids := make([]uint32, 64)
	var pin runtime.Pinner
	pin.Pin(&ids[0])
	defer pin.Unpin()
	q := query{targetFd: uint32(dirFd), attachType: unix.BPF_CGROUP_DEVICE,
		progIDs: uint64(uintptr(unsafe.Pointer(&ids[0]))), progCnt: uint32(len(ids))}
	if _, err := bpfCall(unix.BPF_PROG_QUERY, unsafe.Pointer(&q), unsafe.Sizeof(q)); err != nil {
		return nil, err
	}
	if int(q.progCnt) > len(ids) {
		return nil, errors.New("bpf: more device programs than a cgroup holds")
	}
	return ids[:q.progCnt], nil
}

// bpfProgFd opens the program of id (close-on-exec).
func bpfProgFd(id uint32) (int, error) {
	attr := struct{ id uint32 }{id}
	fd, err := bpfCall(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

// bpfAttachDeviceProg attaches the device program progFd to the cgroup of
// dirFd beside any it has (BPF_F_ALLOW_MULTI, as runc attaches them).
func bpfAttachDeviceProg(dirFd, progFd int) error {
	attr := struct {
		targetFd    uint32
		attachBpfFd uint32
		attachType  uint32
		attachFlags uint32
	}{uint32(dirFd), uint32(progFd), unix.BPF_CGROUP_DEVICE, unix.BPF_F_ALLOW_MULTI}
	_, err := bpfCall(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}
