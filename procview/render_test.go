package procview

import (
	"strings"
	"testing"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// guestStat is a /proc/PID/stat of Linux 6.1 with pid, ppid, pgrp, session,
// tpgid and starttime as given.
func guestStat(pid, comm string, ppid, pgrp, sid, tpgid, start string) string {
	return pid + " (" + comm + ") S " + ppid + " " + pgrp + " " + sid + " 34816 " + tpgid +
		" 4194560 120 0 0 0 7 3 0 0 20 0 1 0 " + start + " 1695744 110 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
}

func TestRender(t *testing.T) {
	const hostBoot = 1_764_576_000 // 2025-12-01 08:00 UTC
	resp := &agentapi.ListProcessesResponse{
		// The guest booted 120.5 s after the host.
		BootUnixNano: (hostBoot+120)*1e9 + 5e8,
		Processes: []*agentapi.ProcessInfo{
			{Pid: 57, Ppid: 1, Comm: "sh", Args: []string{"sh", "-c", "sleep 9 & wait"},
				Stat:   guestStat("57", "sh", "1", "57", "57", "-1", "250"),
				Status: "Name:\tsh\nTgid:\t57\nPid:\t57\nPPid:\t1\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\nNStgid:\t57\t1\nNSpid:\t57\t1\nNSpgid:\t57\t1\nNSsid:\t57\t1\n",
				Pidns:  "pid:[4026532210]"},
			{Pid: 60, Ppid: 57, Comm: "sleep) (x", Args: []string{"sleep", "9"},
				Stat:   guestStat("60", "sleep) (x", "57", "57", "57", "60", "260"),
				Status: "Name:\tsleep\nTgid:\t60\nPid:\t60\nPPid:\t57\nTracerPid:\t57\nNSpid:\t60\t3\nNSpgid:\t57\t1\nNSsid:\t57\t1\n",
				Pidns:  "pid:[4026532210]"},
			{Pid: 61, Ppid: 57, Comm: "zombie",
				// No NSpgid or NSsid: pgrp and session map through the listing.
				Stat:   guestStat("61", "zombie", "57", "57", "99", "-1", "0"),
				Status: "Name:\tzombie\nPid:\t61\nPPid:\t57\nNSpid:\t61\t4\n"},
			{Pid: 70, Ppid: 1, Comm: "old",
				// A kernel without NSpid (before 4.1) has one PID namespace.
				Stat:   guestStat("70", "old", "1", "70", "70", "-1", "0"),
				Status: "Name:\told\nPid:\t70\nPPid:\t1\n"},
		},
	}
	s, err := Render(resp, hostBoot)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Pids; len(got) != 4 || got[0] != 1 || got[1] != 3 || got[2] != 4 || got[3] != 70 {
		t.Fatalf("Pids = %v, want [1 3 4 70]", got)
	}
	tests := []struct {
		pid                          int
		stat, status, cmdline, pidns string
	}{
		// 120.5 s = 12050 ticks later on the host's time line.
		{1, guestStat("1", "sh", "0", "1", "1", "-1", "12300"),
			"Name:\tsh\nTgid:\t1\nPid:\t1\nPPid:\t0\nTracerPid:\t0\nUid:\t1000\t1000\t1000\t1000\nNStgid:\t1\nNSpid:\t1\nNSpgid:\t1\nNSsid:\t1\n",
			"sh\x00-c\x00sleep 9 & wait\x00", "pid:[4026532210]"},
		{3, guestStat("3", "sleep) (x", "1", "1", "1", "3", "12310"),
			"Name:\tsleep\nTgid:\t3\nPid:\t3\nPPid:\t1\nTracerPid:\t1\nNSpid:\t3\nNSpgid:\t1\nNSsid:\t1\n",
			"sleep\x009\x00", "pid:[4026532210]"},
		// Session 99 is outside the namespace: 0.
		{4, guestStat("4", "zombie", "1", "1", "0", "-1", "12050"),
			"Name:\tzombie\nPid:\t4\nPPid:\t1\nNSpid:\t4\n", "", ""},
		{70, guestStat("70", "old", "0", "70", "70", "-1", "12050"),
			"Name:\told\nPid:\t70\nPPid:\t0\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.stat[:2]), func(t *testing.T) {
			p := s.Proc(tt.pid)
			if p == nil {
				t.Fatalf("no process %d", tt.pid)
			}
			if string(p.Stat) != tt.stat {
				t.Errorf("stat:\n got %q\nwant %q", p.Stat, tt.stat)
			}
			if string(p.Status) != tt.status {
				t.Errorf("status:\n got %q\nwant %q", p.Status, tt.status)
			}
			if string(p.Cmdline) != tt.cmdline || p.Pidns != tt.pidns {
				t.Errorf("cmdline %q, pidns %q; want %q, %q", p.Cmdline, p.Pidns, tt.cmdline, tt.pidns)
			}
		})
	}
	if s.Proc(57) != nil || s.Proc(2) != nil {
		t.Error("a guest pid or a pid not listed has a process")
	}
}

func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		name, want string
		p          []*agentapi.ProcessInfo
	}{
		{"no detail", "no status", []*agentapi.ProcessInfo{{Pid: 5, Comm: "sh"}}},
		{"same ns pid", "ns pid 1", []*agentapi.ProcessInfo{
			{Pid: 5, Status: "NSpid:\t5\t1\n", Stat: guestStat("5", "a", "0", "5", "5", "-1", "1")},
			{Pid: 6, Status: "NSpid:\t6\t1\n", Stat: guestStat("6", "b", "0", "6", "6", "-1", "1")}}},
		{"short stat", "malformed stat", []*agentapi.ProcessInfo{{Pid: 5, Status: "Pid:\t5\n", Stat: "5 (sh) S 1 5 5"}}},
		{"no comm", "malformed stat", []*agentapi.ProcessInfo{{Pid: 5, Status: "Pid:\t5\n", Stat: "5 sh S 1 5 5"}}},
		{"bad starttime", "starttime", []*agentapi.ProcessInfo{{Pid: 5, Status: "Pid:\t5\n", Stat: guestStat("5", "a", "0", "5", "5", "-1", "x")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(&agentapi.ListProcessesResponse{Processes: tt.p}, 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestBootTime(t *testing.T) {
	tests := []struct {
		stat string
		want int64
		ok   bool
	}{
		{"cpu  1 2 3\nintr 5\nctxt 9\nbtime 1764576000\nprocesses 40\n", 1764576000, true},
		{"cpu  1 2 3\n", 0, false},
		{"btime x\n", 0, false},
	}
	for _, tt := range tests {
		got, err := BootTime([]byte(tt.stat))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("BootTime(%q) = %d, %v; want %d, ok %v", tt.stat, got, err, tt.want, tt.ok)
		}
	}
}
