package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// syncBuffer is a bytes.Buffer safe for a writer and a later reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (agentapi.MaxReadBytes*2+4096)/16) // more than two reads
	for _, tc := range []struct {
		name       string
		proc       fakeProcScript
		stdin      io.Reader
		signal     os.Signal
		wantOut    string
		wantErr    string
		wantStatus int
	}{
		{
			name:       "separate outputs, stdin echoed, exit status",
			proc:       fakeProcScript{stdout: [][]byte{[]byte("hello "), []byte("world\n")}, stderr: [][]byte{[]byte("warn: 1\n"), []byte("warn: 2\n")}, echo: true, exitStatus: 3},
			stdin:      strings.NewReader("line one\nline two\n"),
			wantOut:    "hello world\nline one\nline two\n",
			wantErr:    "warn: 1\nwarn: 2\n",
			wantStatus: 3,
		},
		{
			// Without a stdin, the process sees EOF at once, else an
			// echoing process would never exit.
			name:    "no stdin means end of file",
			proc:    fakeProcScript{stdout: [][]byte{[]byte("only this")}, echo: true},
			wantOut: "only this",
		},
		{
			name:    "output larger than one read",
			proc:    fakeProcScript{stdout: [][]byte{big}, stderr: [][]byte{big[:100]}, exitStatus: 1},
			stdin:   strings.NewReader(""),
			wantOut: string(big), wantErr: string(big[:100]), wantStatus: 1,
		},
		{
			name:       "forwarded signal ends the process",
			proc:       fakeProcScript{untilSignal: true, stderr: [][]byte{[]byte("waiting\n")}},
			signal:     syscall.SIGTERM,
			wantErr:    "waiting\n",
			wantStatus: 128 + int(syscall.SIGTERM),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.agent.proc = tc.proc
			c := testConfig(t)
			var stdout, stderr syncBuffer
			o := RunOptions{BundleDir: writeBundle(t, nil), ID: "run1", Stdio: Stdio{Stdin: tc.stdin, Stdout: &stdout, Stderr: &stderr}}
			if tc.signal != nil {
				sigs := make(chan os.Signal, 1)
				// Sent once the process runs: its stderr says so.
				go func() {
					for !strings.Contains(stderr.String(), "waiting") {
						time.Sleep(5 * time.Millisecond)
					}
					sigs <- tc.signal
				}()
				o.Signals = sigs
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := run(ctx, c, o, h.deps())
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if res.ExitStatus != tc.wantStatus {
				t.Errorf("exit status %d, want %d", res.ExitStatus, tc.wantStatus)
			}
			if got := stdout.String(); got != tc.wantOut {
				t.Errorf("stdout %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.wantOut), tc.wantOut)
			}
			if got := stderr.String(); got != tc.wantErr {
				t.Errorf("stderr %q, want %q", got, tc.wantErr)
			}
			if res.Driver != "qemu" || res.Accel != "tcg" {
				t.Errorf("driver %q accel %q", res.Driver, res.Accel)
			}
			p, err := h.agent.lookup("run1")
			if err != nil {
				t.Fatal(err)
			}
			if p.spec.Args[0] != "/bin/cat" || p.spec.Cwd != "/" {
				t.Errorf("process %v in %q, want the spec's", p.spec.Args, p.spec.Cwd)
			}
			p.mu.Lock()
			closed, sigs := p.stdinClosed, p.signalled
			p.mu.Unlock()
			if !closed {
				t.Error("stdin was not closed in the guest")
			}
			if tc.signal != nil && (len(sigs) != 1 || sigs[0] != uint32(tc.signal.(syscall.Signal))) {
				t.Errorf("signals %v, want [%d]", sigs, tc.signal)
			}
			if n := h.agent.shutdownCalls(); n != 1 {
				t.Errorf("agent Shutdown called %d times", n)
			}
			if err := h.vm().Wait(); err != nil {
				t.Errorf("vm exit %v, want the clean power-off", err)
			}
			if res.Timings.Teardown <= 0 || res.Timings.Boot <= 0 {
				t.Errorf("timings %+v", res.Timings)
			}
			// The agent's shutdown is part of teardown, timed on its own.
			if q := res.Timings.Quiesce; q <= 0 || q > res.Timings.Teardown {
				t.Errorf("quiesce %v, want within teardown %v", q, res.Timings.Teardown)
			}
			if _, err := os.Stat(filepath.Join(c.Root, "run1")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state dir left behind: %v", err)
			}
			h.assertNothingLeft(c)
		})
	}
}

// TestRunHeldOutput: a background child keeping stdout open does not keep
// Run from returning the exit status (after drainGrace of silence).
func TestRunHeldOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("waits drainGrace")
	}
	h := newFakeHost(t)
	h.agent.proc = fakeProcScript{stdout: [][]byte{[]byte("started daemon\n")}, holdOutput: true, exitStatus: 7}
	c := testConfig(t)
	var stdout syncBuffer
	t0 := time.Now()
	res, err := run(context.Background(), c, RunOptions{BundleDir: writeBundle(t, nil), ID: "held", Stdio: Stdio{Stdout: &stdout}}, h.deps())
	if err != nil || res.ExitStatus != 7 {
		t.Fatalf("run: status %d, %v", res.ExitStatus, err)
	}
	if d := time.Since(t0); d < drainGrace || d > drainGrace+5*time.Second {
		t.Errorf("run took %s, want drainGrace %s plus a little", d, drainGrace)
	}
	if stdout.String() != "started daemon\n" {
		t.Errorf("stdout %q", stdout.String())
	}
	h.assertNothingLeft(c)
}

func TestRunFailures(t *testing.T) {
	t.Run("duplicate id", func(t *testing.T) {
		h := newFakeHost(t)
		c := testConfig(t)
		existing := filepath.Join(c.Root, "dup")
		if err := os.MkdirAll(existing, 0o700); err != nil {
			t.Fatal(err)
		}
		marker := filepath.Join(existing, "state.json")
		if err := os.WriteFile(marker, []byte(`{"id":"dup"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := run(context.Background(), c, RunOptions{BundleDir: writeBundle(t, nil), ID: "dup"}, h.deps())
		if !errors.Is(err, ErrContainerExists) || !strings.Contains(err.Error(), `"dup"`) {
			t.Fatalf("err %v, want ErrContainerExists naming the id", err)
		}
		if res.ExitStatus != -1 {
			t.Errorf("exit status %d, want -1", res.ExitStatus)
		}
		if b, err := os.ReadFile(marker); err != nil || string(b) != `{"id":"dup"}` {
			t.Errorf("existing state touched: %q, %v", b, err)
		}
		if n := h.vmCount(); n != 0 || len(h.images) != 0 {
			t.Errorf("%d VMs and %d images made for a duplicate id", n, len(h.images))
		}
	})
	t.Run("invalid id", func(t *testing.T) {
		h := newFakeHost(t)
		c := testConfig(t)
		_, err := run(context.Background(), c, RunOptions{BundleDir: writeBundle(t, nil), ID: "../escape"}, h.deps())
		if err == nil || !strings.Contains(err.Error(), "invalid container id") {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(c.Root), "escape")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory made outside the state root: %v", err)
		}
	})
	t.Run("boot fails", func(t *testing.T) {
		h := newFakeHost(t)
		h.agent.setupErr = errors.New("mounting proc on /proc: no such device")
		c := testConfig(t)
		res, err := run(context.Background(), c, RunOptions{BundleDir: writeBundle(t, nil), ID: "bad"}, h.deps())
		if err == nil || !strings.Contains(err.Error(), "mounting proc on /proc: no such device") || res.ExitStatus != -1 {
			t.Fatalf("status %d, err %v", res.ExitStatus, err)
		}
		if _, err := os.Stat(filepath.Join(c.Root, "bad")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state dir left behind: %v", err)
		}
		h.assertNothingLeft(c)
	})
	t.Run("vm dies while the process runs", func(t *testing.T) {
		h := newFakeHost(t)
		h.agent.proc = fakeProcScript{untilSignal: true}
		h.vmScript = fakeVMScript{exitAfter: 100 * time.Millisecond, exitErr: errors.New("exit status 1"),
			exitConsole: []string{"Kernel panic - not syncing: Fatal exception"}}
		c := testConfig(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := run(ctx, c, RunOptions{BundleDir: writeBundle(t, nil), ID: "dies"}, h.deps())
		if !errors.Is(err, ErrVMExited) || res.ExitStatus != -1 {
			t.Fatalf("status %d, err %v; want ErrVMExited", res.ExitStatus, err)
		}
		if _, err := os.Stat(filepath.Join(c.Root, "dies")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state dir left behind: %v", err)
		}
		h.assertNothingLeft(c)
	})
}

func TestDrain(t *testing.T) {
	errPumped := errors.New("pump finished")
	// tick is how copyOutput reports progress: never blocking.
	tick := func(progress chan<- struct{}) {
		select {
		case progress <- struct{}{}:
		default:
		}
	}
	for _, tc := range []struct {
		name  string
		grace time.Duration
		// feed sends progress ticks, then the pumps' result unless it
		// returns false (the pumps never finish).
		feed     func(progress chan<- struct{}) bool
		wantErr  error
		min, max time.Duration
	}{
		{
			name:  "returns at end of file",
			grace: 5 * time.Second,
			feed: func(chan<- struct{}) bool {
				time.Sleep(20 * time.Millisecond)
				return true
			},
			wantErr: errPumped, min: 20 * time.Millisecond, max: time.Second,
		},
		{
			// Graces of a second: under a loaded host's scheduling a
			// 20 ms sleep between ticks can take well over 150 ms.
			name:  "keeps waiting while output arrives",
			grace: time.Second,
			feed: func(progress chan<- struct{}) bool {
				for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); {
					time.Sleep(20 * time.Millisecond)
					tick(progress)
				}
				return true
			},
			wantErr: errPumped, min: 600 * time.Millisecond, max: 10 * time.Second,
		},
		{
			name:    "gives up after grace of silence",
			grace:   150 * time.Millisecond,
			feed:    func(chan<- struct{}) bool { return false },
			wantErr: nil, min: 150 * time.Millisecond, max: 10 * time.Second,
		},
		{
			name:  "gives up after grace of silence following output",
			grace: time.Second,
			feed: func(progress chan<- struct{}) bool {
				for i := 0; i < 10; i++ {
					time.Sleep(20 * time.Millisecond)
					tick(progress)
				}
				return false
			},
			wantErr: nil, min: 200*time.Millisecond + time.Second, max: 10 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pumped := make(chan error, 1)
			progress := make(chan struct{}, 1) // as Run makes it
			go func() {
				if tc.feed(progress) {
					pumped <- errPumped
				}
			}()
			t0 := time.Now()
			err := drain(pumped, progress, tc.grace)
			d := time.Since(t0)
			if err != tc.wantErr {
				t.Errorf("drain = %v, want %v", err, tc.wantErr)
			}
			if d < tc.min || d > tc.max {
				t.Errorf("drain took %s, want %s..%s", d, tc.min, tc.max)
			}
		})
	}
}
