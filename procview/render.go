package procview

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, sysconf(_SC_CLK_TCK)):
// 100 on every Linux architecture the runtime supports, guest and host alike.
const userHZ = 100

// Proc is one process's files.
type Proc struct {
	Stat, Status, Cmdline []byte
	// Pidns is ns/pid's link target, "pid:[INODE]".
	Pidns string
}

// Snapshot is a container's processes at one moment, by pid in its PID
// namespace.
type Snapshot struct {
	// Pids in ascending order.
	Pids  []int
	procs map[int]*Proc
}

// Proc is the process of ns pid pid, nil if there is none.
func (s *Snapshot) Proc(pid int) *Proc {
	if s == nil {
		return nil
	}
	return s.procs[pid]
}

// Render turns the agent's detailed listing into /proc files for a host
// whose boot time is hostBoot (Unix seconds, /proc/stat's btime): pids
// become the container's PID namespace's (a parent outside it shows as 0,
// as the kernel shows it) and each start time is counted from hostBoot, so
// that hostBoot plus starttime is the moment the process started by the
// guest's clock.
func Render(resp *agentapi.ListProcessesResponse, hostBoot int64) (*Snapshot, error) {
	nsOf := map[int]int{} // guest pid -> ns pid
	for _, p := range resp.GetProcesses() {
		if p.Status == "" {
			return nil, fmt.Errorf("process %d (%q) has no status: the listing has no detail", p.Pid, p.Comm)
		}
		// NSpid's last field is the pid in the process's own namespace; a
		// kernel without the line (before 4.1) has one namespace.
		nsOf[int(p.Pid)] = int(p.Pid)
		if n := lastOf(p.Status, "NSpid"); n > 0 {
			nsOf[int(p.Pid)] = n
		}
	}
	// The guest's boot moment on the host's time line, in ticks.
	shift := (resp.GetBootUnixNano() - hostBoot*1e9) * userHZ / 1e9
	s := &Snapshot{procs: map[int]*Proc{}}
	for _, p := range resp.GetProcesses() {
		pid := nsOf[int(p.Pid)]
		if s.procs[pid] != nil {
			return nil, fmt.Errorf("processes %d and another have ns pid %d", p.Pid, pid)
		}
		ids := nsIDs{pid: pid, ppid: nsOf[int(p.Ppid)], nsOf: nsOf}
		ids.pgrp, ids.sid = lastOf(p.Status, "NSpgid"), lastOf(p.Status, "NSsid")
		stat, err := renderStat(p.Stat, ids, shift)
		if err != nil {
			return nil, fmt.Errorf("process %d: %w", p.Pid, err)
		}
		proc := &Proc{Stat: stat, Status: renderStatus(p.Status, ids), Pidns: p.Pidns}
		if len(p.Args) > 0 {
			proc.Cmdline = []byte(strings.Join(p.Args, "\x00") + "\x00")
		}
		s.procs[pid] = proc
		s.Pids = append(s.Pids, pid)
	}
	slices.Sort(s.Pids)
	return s, nil
}

// nsIDs are a process's ids in its container's PID namespace.
type nsIDs struct {
	pid, ppid, pgrp, sid int
	nsOf                 map[int]int
}

// lastOf is the last field of status's line key (its value in the
// process's own namespace), -1 when there is none.
func lastOf(status, key string) int {
	f := statusFields(status, key)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		return -1
	}
	return n
}

// statusFields is the fields of status's line key.
func statusFields(status, key string) []string {
	for line := range strings.SplitSeq(status, "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// Fields of /proc/PID/stat after comm, counted from state (field 3 of
// proc(5)).
const (
	statPpid      = 4 - 3
	statPgrp      = 5 - 3
	statSession   = 6 - 3
	statTpgid     = 8 - 3
	statStarttime = 22 - 3
)

// renderStat rewrites stat's pids to ids and moves its start time by shift
// ticks. comm may hold spaces and parentheses: the fields after it are
// found from the last ')'.
func renderStat(stat string, ids nsIDs, shift int64) ([]byte, error) {
	open, closing := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || closing < open {
		return nil, fmt.Errorf("malformed stat %q", stat)
	}
	rest := strings.Fields(stat[closing+1:])
	if len(rest) <= statStarttime {
		return nil, fmt.Errorf("malformed stat %q: %d fields after comm, want more than %d", stat, len(rest), statStarttime)
	}
	rest[statPpid] = strconv.Itoa(ids.ppid)
	pgrp, sid := ids.pgrp, ids.sid
	if pgrp < 0 {
		pgrp = ids.fromGuest(rest[statPgrp])
	}
	if sid < 0 {
		sid = ids.fromGuest(rest[statSession])
	}
	rest[statPgrp], rest[statSession] = strconv.Itoa(pgrp), strconv.Itoa(sid)
	if rest[statTpgid] != "-1" {
		rest[statTpgid] = strconv.Itoa(ids.fromGuest(rest[statTpgid]))
	}
	start, err := strconv.ParseInt(rest[statStarttime], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("malformed stat %q: starttime: %w", stat, err)
	}
	rest[statStarttime] = strconv.FormatInt(max(start+shift, 0), 10)
	return fmt.Appendf(nil, "%d %s %s\n", ids.pid, stat[open:closing+1], strings.Join(rest, " ")), nil
}

// fromGuest maps a guest pid in decimal to the namespace's: 0 for one
// outside it (or none).
func (ids nsIDs) fromGuest(s string) int {
	g, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return ids.nsOf[g]
}

// renderStatus rewrites the pid lines of status to ids: what the kernel
// prints when /proc is the container's.
func renderStatus(status string, ids nsIDs) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(strings.NewReader(status))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key, _, _ := strings.Cut(line, ":")
		switch key {
		case "Tgid", "Pid", "NStgid", "NSpid":
			fmt.Fprintf(&b, "%s:\t%d\n", key, ids.pid)
		case "PPid":
			fmt.Fprintf(&b, "%s:\t%d\n", key, ids.ppid)
		case "TracerPid":
			fmt.Fprintf(&b, "%s:\t%d\n", key, ids.fromGuest(strings.TrimSpace(line[len(key)+1:])))
		case "NSpgid":
			fmt.Fprintf(&b, "%s:\t%d\n", key, max(ids.pgrp, 0))
		case "NSsid":
			fmt.Fprintf(&b, "%s:\t%d\n", key, max(ids.sid, 0))
		default:
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// BootTime is the btime line of a /proc/stat.
func BootTime(stat []byte) (int64, error) {
	for line := range strings.SplitSeq(string(stat), "\n") {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing /proc/stat's btime %q: %w", rest, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("/proc/stat has no btime line")
}
