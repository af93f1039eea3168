package guestagent

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// fakeTracer replays wait statuses and records what the watcher did.
type fakeTracer struct {
	stops []unix.WaitStatus
	msg   uint
	conts []unix.Signal
	kills []unix.Signal
}

func (f *fakeTracer) wait() (unix.WaitStatus, error) {
	if len(f.stops) == 0 {
		return 0, unix.ECHILD
	}
	ws := f.stops[0]
	f.stops = f.stops[1:]
	return ws, nil
}
func (f *fakeTracer) cont(sig unix.Signal) error { f.conts = append(f.conts, sig); return nil }
func (f *fakeTracer) eventMsg() (uint, error)    { return f.msg, nil }
func (f *fakeTracer) kill(sig unix.Signal) error { f.kills = append(f.kills, sig); return nil }

// stopped is a wait status of a ptrace stop: sig and the event.
func stopped(sig unix.Signal, event int) unix.WaitStatus {
	return unix.WaitStatus(event<<16 | int(sig)<<8 | 0x7f)
}

func TestWatcherLoop(t *testing.T) {
	tests := []struct {
		name       string
		freeze     bool
		stops      []unix.WaitStatus
		msg        uint
		wantConts  []unix.Signal
		wantKills  []unix.Signal
		wantReport string
	}{
		{
			name: "signals pass on, the exit is reported and kept",
			stops: []unix.WaitStatus{
				stopped(unix.SIGTERM, 0), stopped(unix.SIGCHLD, 0),
				stopped(unix.SIGTRAP, unix.PTRACE_EVENT_EXIT),
			},
			msg:        3 << 8, // exit(3)
			wantConts:  []unix.Signal{unix.SIGTERM, unix.SIGCHLD},
			wantReport: "exit 768\n",
		},
		{
			name:       "a SIGSTOP is dropped, as init's would be",
			stops:      []unix.WaitStatus{stopped(unix.SIGSTOP, 0)},
			wantConts:  []unix.Signal{0},
			wantReport: "",
		},
		{
			name:       "a group stop is undone",
			stops:      []unix.WaitStatus{stopped(unix.SIGTSTP, unix.PTRACE_EVENT_STOP)},
			wantConts:  []unix.Signal{0},
			wantKills:  []unix.Signal{unix.SIGCONT},
			wantReport: "",
		},
		{
			name:       "a trap notification is continued, without a SIGCONT that would trap again",
			stops:      []unix.WaitStatus{stopped(unix.SIGTRAP, unix.PTRACE_EVENT_STOP), stopped(unix.SIGTRAP, unix.PTRACE_EVENT_STOP)},
			wantConts:  []unix.Signal{0, 0},
			wantReport: "",
		},
		{
			name:       "a freeze lets SIGSTOP through and reports its group stop as SIGKILL",
			freeze:     true,
			stops:      []unix.WaitStatus{stopped(unix.SIGSTOP, 0), stopped(unix.SIGSTOP, unix.PTRACE_EVENT_STOP)},
			wantConts:  []unix.Signal{unix.SIGSTOP},
			wantReport: "exit 9\n",
		},
		{
			name:       "a death by signal",
			stops:      []unix.WaitStatus{stopped(unix.SIGTRAP, unix.PTRACE_EVENT_EXIT)},
			msg:        uint(unix.SIGSEGV),
			wantReport: "exit 11\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := &pid1Watcher{out: &out}
			w.frozen.Store(tt.freeze)
			f := &fakeTracer{stops: tt.stops, msg: tt.msg}
			err := w.loop(f)
			if !errors.Is(err, unix.ECHILD) {
				t.Fatalf("loop: %v, want the fake's end (ECHILD)", err)
			}
			if got, want := sigs(f.conts), sigs(tt.wantConts); got != want {
				t.Errorf("continued with %s, want %s", got, want)
			}
			if got, want := sigs(f.kills), sigs(tt.wantKills); got != want {
				t.Errorf("sent %s, want %s", got, want)
			}
			if out.String() != tt.wantReport {
				t.Errorf("report %q, want %q", out.String(), tt.wantReport)
			}
		})
	}
}

func sigs(s []unix.Signal) string {
	var b strings.Builder
	for _, sig := range s {
		b.WriteString(unix.SignalName(sig) + ",")
	}
	return b.String()
}

func TestWatcherReportsOnce(t *testing.T) {
	var out bytes.Buffer
	w := &pid1Watcher{out: &out}
	f := &fakeTracer{stops: []unix.WaitStatus{
		stopped(unix.SIGTRAP, unix.PTRACE_EVENT_EXIT),
		stopped(unix.SIGSTOP, unix.PTRACE_EVENT_STOP),
	}}
	w.frozen.Store(true)
	_ = w.loop(f)
	if out.String() != "exit 0\n" {
		t.Errorf("report %q, want only the exit", out.String())
	}
}

func TestWatcherControl(t *testing.T) {
	w := &pid1Watcher{}
	f := &fakeTracer{}
	w.control(strings.NewReader("nonsense\nfreeze\n"), f)
	if !w.frozen.Load() || sigs(f.kills) != "SIGSTOP," {
		t.Errorf("after freeze: frozen %t, sent %s; want a SIGSTOP", w.frozen.Load(), sigs(f.kills))
	}
}

func TestReadExitReport(t *testing.T) {
	tests := []struct {
		in      string
		want    int32
		wantErr bool
	}{
		{"exit 0\n", 0, false},
		{"exit 768\n", 3, false},
		{"exit 9\n", 137, false},
		{"exit 15\n", 143, false},
		{"", 0, true},
		{"exited 0\n", 0, true},
		{"exit -1\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.in), func(t *testing.T) {
			got, err := readExitReport(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("readExitReport(%q) = %d, %v; want %d, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestHandoffSocket: the descriptors reach the other end in order, with
// the message; a short handoff is refused.
func TestHandoffSocket(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	defer a.Close()
	defer b.Close()
	var files []uintptr
	var writers []*os.File
	for i := 0; i < procinit.HandoffFiles; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		files = append(files, w.Fd())
		writers = append(writers, r)
	}
	if err := sendHandoff(a, handoffMsg{Unshare: unix.CLONE_NEWNS}, files); err != nil {
		t.Fatal(err)
	}
	msg, got, err := recvHandoff(b)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFds(got)
	if msg.Unshare != unix.CLONE_NEWNS || len(got) != procinit.HandoffFiles {
		t.Fatalf("got %+v and %d descriptors", msg, len(got))
	}
	// Each received descriptor is the pipe sent in its place.
	for i, fd := range got {
		if _, err := unix.Write(fd, []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
		var buf [1]byte
		if _, err := writers[i].Read(buf[:]); err != nil || buf[0] != byte('0'+i) {
			t.Errorf("descriptor %d is not pipe %d (%q, %v)", i, i, buf[:], err)
		}
	}

	if err := sendHandoff(a, handoffMsg{}, files[:2]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := recvHandoff(b); err == nil || !strings.Contains(err.Error(), "got 2 descriptors") {
		t.Errorf("a short handoff: %v, want it refused", err)
	}
}

func TestDrainOutputs(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b := newOutputBuffer(1 << 20)
	done := make(chan struct{})
	go func() { b.pump(r); close(done) }()
	want := strings.Repeat("x", 50000)
	if _, err := w.WriteString(want); err != nil {
		t.Fatal(err)
	}
	drainOutputs([]*os.File{r}, 2*time.Second)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the pump did not end after the drain closed its pipe")
	}
	b.mu.Lock()
	got, eof, berr := b.buf.String(), b.eof, b.err
	b.mu.Unlock()
	if got != want || !eof || berr != nil {
		t.Errorf("buffered %d bytes, eof %t, err %v; want %d bytes at a clean EOF", len(got), eof, berr, len(want))
	}

	// Nobody reads: the drain gives up after its quiet time.
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := w2.WriteString("unread"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	drainOutputs([]*os.File{r2}, 100*time.Millisecond)
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("drain with no reader took %s", took)
	}
}

// nopCloser is a control pipe that records what the agent asks.
type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

// TestServicePID1: with PID 1 handed off, the default container lists
// PID 1 and never the watcher or the agent, a SIGKILL to PID 1 freezes it
// (once) instead of reaching the kernel, other signals reach it, and the
// shutdown's signals spare PID 1 and the watcher.
func TestServicePID1(t *testing.T) {
	s, sys, _ := newTestService(t)
	var ctl bytes.Buffer
	h := newPid1(nil, nil, s.log)
	h.control, h.watcher = nopCloser{&ctl}, 77
	s.setPID1(h)
	sys.procs = []procInfo{{Pid: 1, Comm: "sh"}, {Pid: s.self, Comm: "agent"}, {Pid: 77, Comm: "watcher"}, {Pid: 90, Comm: "sleep"}, {Pid: 2, Kernel: true}}

	def := &guestContainer{id: ""}
	if got := pids(t, s, def); got != "1,90," {
		t.Errorf("the default container's processes: %s, want PID 1 and 90", got)
	}
	if got := pids(t, s, nil); got != "90," {
		t.Errorf("the guest's processes for the shutdown: %s, want only 90", got)
	}
	if err := s.kill(1, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.kill(1, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(sys.killed, " "); got != "1:15" {
		t.Errorf("signals sent: %q, want only the TERM to PID 1", got)
	}
	if ctl.String() != "freeze\n" {
		t.Errorf("the watcher was asked %q, want one freeze", ctl.String())
	}
}

func pids(t *testing.T, s *Service, c *guestContainer) string {
	t.Helper()
	procs, err := s.userProcs(c)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range procs {
		b.WriteString(strconv.Itoa(p.Pid) + ",")
	}
	return b.String()
}
