package guestagent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pfKthread is PF_KTHREAD in the flags field of /proc/PID/stat.
const pfKthread = 0x00200000

// procInfo is one process of /proc.
type procInfo struct {
	Pid    int
	Ppid   int
	Comm   string
	Args   []string
	Kernel bool // a kernel thread
	// Pidns is the target of /proc/PID/ns/pid ("pid:[inode]"): which
	// container's PID namespace the process is in ("" if unknown).
	Pidns string
	// Cgroup is its cgroup v2 path ("0::" of /proc/PID/cgroup, e.g.
	// "/c-app"; "" if unknown): which container a process of a shared PID
	// namespace belongs to.
	Cgroup string
}

// parseStat parses /proc/PID/stat. comm may hold spaces and parentheses, so
// the fields after it are found from the last ')'.
func parseStat(data string) (procInfo, error) {
	open := strings.IndexByte(data, '(')
	closing := strings.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return procInfo{}, errorf(ErrInvalidArgument, "malformed stat %q", data)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(data[:open]))
	if err != nil {
		return procInfo{}, errorf(ErrInvalidArgument, "malformed stat %q: pid: %w", data, err)
	}
	// state ppid pgrp session tty_nr tpgid flags ...
	rest := strings.Fields(data[closing+1:])
	if len(rest) < 7 {
		return procInfo{}, errorf(ErrInvalidArgument, "malformed stat %q: too few fields", data)
	}
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return procInfo{}, errorf(ErrInvalidArgument, "malformed stat %q: ppid: %w", data, err)
	}
	flags, err := strconv.ParseUint(rest[6], 10, 64)
	if err != nil {
		return procInfo{}, errorf(ErrInvalidArgument, "malformed stat %q: flags: %w", data, err)
	}
	return procInfo{Pid: pid, Ppid: ppid, Comm: data[open+1 : closing], Kernel: flags&pfKthread != 0}, nil
}

// listProcs reads every process of the proc filesystem at root. Processes
// that exit during the walk are skipped.
func listProcs(root string) ([]procInfo, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %q: %w", root, err)
	}
	var out []procInfo
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(root, e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, fmt.Errorf("reading %q: %w", filepath.Join(dir, "stat"), err)
		}
		p, err := parseStat(string(stat))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		if !p.Kernel {
			cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
			if err != nil && !gone(err) {
				return nil, fmt.Errorf("reading %q: %w", filepath.Join(dir, "cmdline"), err)
			}
			if cmdline = bytes.TrimRight(cmdline, "\x00"); len(cmdline) > 0 {
				p.Args = strings.Split(string(cmdline), "\x00")
			}
			p.Pidns, _ = os.Readlink(filepath.Join(dir, "ns", "pid"))
			if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
				p.Cgroup = cgroupV2Path(string(cg))
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// gone reports a read error of a process that exited meanwhile.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// cgroupV2Path is the cgroup v2 path of a /proc/PID/cgroup ("0::PATH"), ""
// without one.
func cgroupV2Path(data string) string {
	for _, line := range strings.Split(data, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}
