package guestagent

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want procInfo
	}{
		{"user process", "42 (sh) S 1 42 42 34816 42 4194560 110 0 0 0",
			procInfo{Pid: 42, Ppid: 1, Comm: "sh"}},
		{"kernel thread", "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0",
			procInfo{Pid: 2, Ppid: 0, Comm: "kthreadd", Kernel: true}},
		{"comm with spaces and parens", "7 (a (b) c) R 5 7 7 0 -1 4194304 0",
			procInfo{Pid: 7, Ppid: 5, Comm: "a (b) c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "42 sh S 1", "x (sh) S 1 1 1 1 1 0", "4 (sh) S 1", "4 (sh) S x 1 1 1 1 0", "4 (sh) S 1 1 1 1 1 z"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestListProcs(t *testing.T) {
	root := t.TempDir()
	write := func(pid, stat, cmdline string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
		if cmdline != "" {
			os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644)
		}
	}
	write("1", "1 (init) S 0 0 0 0 -1 4194560 0", "/init\x00")
	write("2", "2 (kthreadd) S 0 0 0 0 -1 2129984 0", "")
	write("30", "30 (sleep) S 1 30 30 0 -1 4194560 0", "sleep\x0030\x00")
	write("31", "31 (zombie) Z 30 30 30 0 -1 4194564 0", "")
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1"), 0o644)
	os.MkdirAll(filepath.Join(root, "99"), 0o755) // exited during the walk: no stat

	got, err := listProcs(root)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b procInfo) int { return a.Pid - b.Pid })
	want := []procInfo{
		{Pid: 1, Comm: "init", Args: []string{"/init"}},
		{Pid: 2, Comm: "kthreadd", Kernel: true},
		{Pid: 30, Ppid: 1, Comm: "sleep", Args: []string{"sleep", "30"}},
		{Pid: 31, Ppid: 30, Comm: "zombie"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestListProcsRealProc(t *testing.T) {
	procs, err := listProcs("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	for _, p := range procs {
		if p.Pid == self {
			if p.Ppid != os.Getppid() || len(p.Args) == 0 || p.Kernel {
				t.Errorf("own entry %+v: want ppid %d, args, not a kernel thread", p, os.Getppid())
			}
			return
		}
	}
	t.Errorf("own pid %d missing from %d processes", self, len(procs))
}
