package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// waitConsole waits until the console log matches re and returns the
// match's first group.
func waitConsole(t *testing.T, path string, re *regexp.Regexp, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if m := re.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		if time.Now().After(deadline) {
			t.Fatalf("console %s never matched %q within %s:\n%s", path, re, d, vmm.ConsoleTail(path, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// TestTemplateSaveRestore boots a template whose /init counts on the
// console, saves it, and restores two clones at once from the snapshot:
// each goes on counting from where the template was saved, without a
// boot, and neither changes the template's RAM file.
func TestTemplateSaveRestore(t *testing.T) {
	kernel := needQemu(t)
	initrd := makeInitrd(t, "echo TEMPLATE-READY\ni=0\nwhile true; do i=$((i+1)); echo TICK-$i; sleep 0.2; done\n")
	dir := t.TempDir()
	snap := &vmm.Snapshot{RAM: filepath.Join(dir, "tpl.ram"), State: filepath.Join(dir, "tpl.state")}
	ctx := context.Background()

	cfg := testConfig(t, kernel, initrd)
	cfg.ID, cfg.Template = "tpl", snap
	tpl, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tpl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tpl.Stop(context.Background()) })
	waitConsole(t, cfg.ConsoleLog, regexp.MustCompile(`TICK-(\d+)`), 2*time.Minute)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := tpl.Save(sctx); err != nil {
		t.Fatal(err)
	}
	saved := time.Since(t0)
	console, _ := os.ReadFile(cfg.ConsoleLog)
	last := regexp.MustCompile(`TICK-(\d+)`).FindAllSubmatch(console, -1)
	lastTick, _ := strconv.Atoi(string(last[len(last)-1][1]))
	if err := tpl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snap.State + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the save's temporary file is left: %v", err)
	}
	ramSum := fileSum(t, snap.RAM)

	type clone struct {
		v    *VM
		cfg  vmm.Config
		took time.Duration
		err  error
	}
	clones := make([]*clone, 2)
	done := make(chan *clone)
	for i := range clones {
		c := &clone{cfg: testConfig(t, kernel, initrd)}
		c.cfg.ID, c.cfg.RestoreFrom = fmt.Sprintf("clone%d", i), snap
		clones[i] = c
		go func() {
			t0 := time.Now()
			c.v, c.err = New(c.cfg, Options{})
			if c.err == nil {
				c.err = c.v.Start(ctx)
			}
			c.took = time.Since(t0)
			done <- c
		}()
	}
	for range clones {
		c := <-done
		if c.err != nil {
			t.Fatalf("%s: %v", c.cfg.ID, c.err)
		}
		t.Cleanup(func() { _ = c.v.Stop(context.Background()) })
	}
	for _, c := range clones {
		first, _ := strconv.Atoi(waitConsole(t, c.cfg.ConsoleLog, regexp.MustCompile(`TICK-(\d+)`), time.Minute))
		if first <= lastTick {
			t.Errorf("%s counted from %d, want past the template's %d", c.cfg.ID, first, lastTick)
		}
		b, _ := os.ReadFile(c.cfg.ConsoleLog)
		if bytes.Contains(b, []byte("Linux version")) || bytes.Contains(b, []byte("TEMPLATE-READY")) {
			t.Errorf("%s booted instead of resuming:\n%s", c.cfg.ID, b)
		}
		if a := strings.Join(c.v.Args(), " "); !strings.Contains(a, "share=off") || !strings.Contains(a, "-incoming defer") {
			t.Errorf("%s: args %q", c.cfg.ID, a)
		}
		pid := c.v.Pid()
		if err := c.v.Stop(ctx); err != nil {
			t.Errorf("%s: stop: %v", c.cfg.ID, err)
		}
		assertClean(t, c.v, pid)
		t.Logf("%s: running %s after exec (saved in %s)", c.cfg.ID, c.took.Round(time.Millisecond), saved.Round(time.Millisecond))
	}
	if fileSum(t, snap.RAM) != ramSum {
		t.Error("a clone wrote to the template's RAM file")
	}
}

// TestRestoreSteps drives restore against a fake qemu: the incoming
// migration starts once, however often readiness is polled; a failed one
// names qemu's reason and the state; a loaded guest is resumed.
func TestRestoreSteps(t *testing.T) {
	tests := []struct {
		name     string
		status   []string // query-status replies in turn (the last repeats)
		migrate  string   // query-migrate's status
		wantErr  string
		wantCmds string
	}{
		{"loaded, then resumed", []string{"inmigrate", "paused", "running"}, "completed", "",
			"query-status migrate-set-capabilities migrate-incoming query-migrate query-status cont query-status"},
		{"load failed", []string{"inmigrate"}, "failed", "load of migration failed",
			"query-status migrate-set-capabilities migrate-incoming query-migrate"},
		{"already running", []string{"running"}, "", "", "query-status"},
		{"an unexpected status", []string{"shutdown"}, "", `qemu status "shutdown" while restoring`, "query-status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			sock, cmds := fakeQMP(t, greeting, func(cmd string) []string {
				switch cmd {
				case "query-status":
					st := status[0]
					if len(status) > 1 {
						status = status[1:]
					}
					return []string{`{"return": {"status": "` + st + `", "running": false}}`}
				case "query-migrate":
					return []string{`{"return": {"status": "` + tt.migrate + `", "error-desc": "load of migration failed: Invalid argument"}}`}
				}
				return []string{`{"return": {}}`}
			})
			v := &VM{cfg: vmm.Config{ID: "c", StateDir: filepath.Dir(sock),
				RestoreFrom: &vmm.Snapshot{RAM: "/t.ram", State: "/t's.state"}}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := v.ready(ctx)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ready = %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && tt.migrate == "failed" && !strings.Contains(err.Error(), "/t's.state") {
				t.Errorf("error %q does not name the state", err)
			}
			var got []string
			for len(cmds) > 0 {
				if c := <-cmds; c != "qmp_capabilities" {
					got = append(got, c)
				}
			}
			if strings.Join(got, " ") != tt.wantCmds {
				t.Errorf("commands %q, want %q", strings.Join(got, " "), tt.wantCmds)
			}
			// Polled again, a started load is not started twice.
			if tt.migrate == "failed" {
				_ = v.ready(ctx)
				for len(cmds) > 0 {
					if c := <-cmds; c == "migrate-incoming" {
						t.Error("migrate-incoming sent twice")
					}
				}
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b":      "'/a/b'",
		"/a b/c'd":  `'/a b/c'\''d'`,
		"$(reboot)": "'$(reboot)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
