package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// fakeQMP serves one QMP session per connection: it sends greeting, then
// answers each command line with reply(command) (raw lines, may be several).
func fakeQMP(t *testing.T, greeting string, reply func(cmd string) []string) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cmds := make(chan string, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				c.Write([]byte(greeting + "\n"))
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var req struct {
						Execute string `json:"execute"`
					}
					if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
						return
					}
					cmds <- req.Execute
					lines := reply(req.Execute)
					if lines == nil {
						return // close without answering
					}
					for _, l := range lines {
						c.Write([]byte(l + "\n"))
					}
				}
			}(c)
		}
	}()
	return path, cmds
}

const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`

func TestQMP(t *testing.T) {
	ok := `{"return": {}}`
	tests := []struct {
		name     string
		greeting string
		reply    func(cmd string) []string
		command  string
		want     string // returned JSON, or error substring when wantErr
		wantErr  bool
	}{
		{"query-status with events first", greeting, func(cmd string) []string {
			if cmd == "query-status" {
				return []string{`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`, `{"return": {"status": "running", "running": true}}`}
			}
			return []string{ok}
		}, "query-status", `{"status": "running", "running": true}`, false},
		{"error reply", greeting, func(cmd string) []string {
			if cmd == "cont" {
				return []string{`{"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}}`}
			}
			return []string{ok}
		}, "cont", "qmp cont: GenericError: Resetting the Virtual Machine is required", true},
		{"quit closes before replying", greeting, func(cmd string) []string {
			if cmd == "quit" {
				return nil
			}
			return []string{ok}
		}, "quit", "", false},
		{"stop closes before replying", greeting, func(cmd string) []string {
			if cmd == "stop" {
				return nil
			}
			return []string{ok}
		}, "stop", "EOF", true},
		{"not a qmp greeting", `{"hello": 1}`, func(string) []string { return []string{ok} }, "stop", `without "QMP"`, true},
		{"garbage reply", greeting, func(cmd string) []string {
			if cmd == "stop" {
				return []string{"garbage"}
			}
			return []string{ok}
		}, "stop", "bad qmp message", true},
		{"overlong reply", greeting, func(cmd string) []string {
			if cmd == "stop" {
				return []string{`{"return": "` + strings.Repeat("x", qmpMaxLine) + `"}`}
			}
			return []string{ok}
		}, "stop", "longer than", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, cmds := fakeQMP(t, tt.greeting, tt.reply)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ret, err := qmpRun(ctx, path, tt.command)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("qmpRun = %s, %v; want error containing %q", ret, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("qmpRun: %v", err)
			}
			if string(ret) != tt.want {
				t.Errorf("qmpRun = %s, want %s", ret, tt.want)
			}
			if c := <-cmds; c != "qmp_capabilities" {
				t.Errorf("first command %q, want qmp_capabilities", c)
			}
			if c := <-cmds; c != tt.command {
				t.Errorf("second command %q, want %q", c, tt.command)
			}
		})
	}
}

func TestQMPErrorsAreSentinel(t *testing.T) {
	path, _ := fakeQMP(t, greeting, func(cmd string) []string {
		if cmd == "stop" {
			return []string{`{"error": {"class": "GenericError", "desc": "no"}}`}
		}
		return []string{`{"return": {}}`}
	})
	_, err := qmpRun(context.Background(), path, "stop")
	if !errors.Is(err, vmm.ErrVMMRequest) {
		t.Errorf("qmpRun error %v does not wrap ErrVMMRequest", err)
	}
}

func TestQMPDeadline(t *testing.T) {
	// A server that accepts and never speaks: the ctx deadline must end it.
	path := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = qmpRun(ctx, path, "stop")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("qmpRun = %v, want a timeout", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("qmpRun took %s past a 200ms deadline", d)
	}
}
