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
	"syscall"
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

// startVM starts a VM of cfg, stopped at the test's end.
func startVM(t *testing.T, cfg vmm.Config) *VM {
	t.Helper()
	v, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	return v
}

// clone is a VM startClones restored, and how long its Start took.
type clone struct {
	v    *VM
	cfg  vmm.Config
	took time.Duration
	err  error
}

// startClones restores n clones at once, clone i of config cfg(i), and
// fails the test unless all start; each is stopped at its end.
func startClones(t *testing.T, n int, cfg func(i int) vmm.Config) []*clone {
	t.Helper()
	clones := make([]*clone, n)
	done := make(chan *clone)
	for i := range clones {
		c := &clone{cfg: cfg(i)}
		clones[i] = c
		go func() {
			t0 := time.Now()
			c.v, c.err = New(c.cfg, Options{})
			if c.err == nil {
				c.err = c.v.Start(context.Background())
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
	return clones
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
	tpl := startVM(t, cfg)
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

	clones := startClones(t, 2, func(i int) vmm.Config {
		cfg := testConfig(t, kernel, initrd)
		cfg.ID, cfg.RestoreFrom = fmt.Sprintf("clone%d", i), snap
		return cfg
	})
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

// TestTemplateVirtiofs saves a template whose virtiofs share is an empty
// PCIe root port and restores two clones at once, each with a share of
// its own: each clone's guest, resumed mid-loop, mounts its own share
// once restore has hot-added it, reads the clone's file and writes back;
// the template's RAM file is unchanged and nothing is left behind.
func TestTemplateVirtiofs(t *testing.T) {
	kernel := needQemu(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: virtiofsd sandboxes itself in namespaces")
	}
	if _, err := vmm.FindVirtiofsd(""); err != nil {
		t.Skip(err)
	}
	mods := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "fuse", "virtiofs"}
	initrd := makeInitrd(t, "echo TEMPLATE-READY\n"+
		"until mount -t virtiofs z /z 2>/dev/null; do sleep 0.05; done\n"+
		"echo \"SHARE=$(cat /z/hello)\"\necho from-guest > /z/back\nsync\necho SHARE-DONE\nwhile true; do sleep 1; done\n", mods...)
	dir := t.TempDir()
	snap := &vmm.Snapshot{RAM: filepath.Join(dir, "tpl.ram"), State: filepath.Join(dir, "tpl.state")}
	ctx := context.Background()

	cfg := testConfig(t, kernel, initrd)
	cfg.ID, cfg.Template = "tpl", snap
	cfg.Shares = []vmm.Share{{Dir: t.TempDir(), Tag: "z", Mode: vmm.ShareVirtiofs}}
	tpl := startVM(t, cfg)
	waitConsole(t, cfg.ConsoleLog, regexp.MustCompile(`(TEMPLATE-READY)`), 2*time.Minute)
	time.Sleep(200 * time.Millisecond) // in its mount loop
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := tpl.Save(sctx); err != nil {
		t.Fatal(err)
	}
	if err := tpl.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	ramSum := fileSum(t, snap.RAM)

	shares := make([]string, 2)
	clones := startClones(t, len(shares), func(i int) vmm.Config {
		shares[i] = t.TempDir()
		if err := os.WriteFile(filepath.Join(shares[i], "hello"), []byte(fmt.Sprintf("clone-%d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, kernel, initrd)
		cfg.ID, cfg.RestoreFrom = fmt.Sprintf("clone%d", i), snap
		cfg.Shares = []vmm.Share{{Dir: shares[i], Tag: "z", Mode: vmm.ShareVirtiofs}}
		return cfg
	})
	for i, c := range clones {
		if got := waitConsole(t, c.cfg.ConsoleLog, regexp.MustCompile(`SHARE=(\S*)`), time.Minute); got != fmt.Sprintf("clone-%d", i) {
			t.Errorf("%s read %q from its share", c.cfg.ID, got)
		}
		waitConsole(t, c.cfg.ConsoleLog, regexp.MustCompile(`(SHARE-DONE)`), time.Minute)
		if b, err := os.ReadFile(filepath.Join(shares[i], "back")); err != nil || string(b) != "from-guest\n" {
			t.Errorf("%s: file the guest wrote to its share = %q, %v", c.cfg.ID, b, err)
		}
		if b, _ := os.ReadFile(c.cfg.ConsoleLog); bytes.Contains(b, []byte("TEMPLATE-READY")) {
			t.Errorf("%s booted instead of resuming:\n%s", c.cfg.ID, b)
		}
		pid := c.v.Pid()
		if err := c.v.Stop(ctx); err != nil {
			t.Errorf("%s: stop: %v", c.cfg.ID, err)
		}
		assertClean(t, c.v, pid)
		t.Logf("%s: running %s after exec", c.cfg.ID, c.took.Round(time.Millisecond))
	}
	if fileSum(t, snap.RAM) != ramSum {
		t.Error("a clone wrote to the template's RAM file")
	}
}

// TestCopyRAM: the copy reads as the source, zero pages and holes alike,
// and holds no page of zeros.
func TestCopyRAM(t *testing.T) {
	src := filepath.Join(t.TempDir(), "ram")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, ramPage) }
	// Data, a written page of zeros, a hole, data over a 1 MiB read, and
	// a short tail.
	writes := map[int64][]byte{0: page(1), ramPage: make([]byte, ramPage), 3 * ramPage: page(2),
		1<<20 - ramPage: append(page(3), page(4)...), 5 << 20: []byte("tail")}
	for off, b := range writes {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	want, _ := os.ReadFile(src)
	want = append(want, make([]byte, size-len(want))...)

	out, err := copyRAM(src, size)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	got := make([]byte, size)
	if _, err := out.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the copy differs from the source")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(out.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used != 5*ramPage {
		t.Errorf("the copy holds %d bytes, want %d (the five pages that are not zeros)", used, 5*ramPage)
	}
	if _, err := copyRAM(src, 4<<20); err == nil || !strings.Contains(err.Error(), "more than the vm's") {
		t.Errorf("copyRAM into a smaller vm = %v", err)
	}
	if _, err := copyRAM(filepath.Join(t.TempDir(), "none"), size); err == nil {
		t.Error("copyRAM of a missing file succeeded")
	}
}

// TestTemplateDisk saves a template whose disk is an empty placeholder and
// restores two clones at once, each with an image of its own: each
// clone's guest, resumed, sees its disk grow to its image's size and reads
// its own bytes.
func TestTemplateDisk(t *testing.T) {
	kernel := needQemu(t)
	initrd := makeInitrd(t, "echo TEMPLATE-READY\n"+
		"until [ \"$(cat /sys/block/vda/size)\" != 0 ]; do sleep 0.05; done\n"+
		"echo \"DISK=$(head -c 7 /dev/vda) SERIAL=$(cat /sys/block/vda/serial)\"\nwhile true; do sleep 1; done\n",
		"virtio_ring", "virtio", "virtio_mmio", "virtio_blk")
	dir := t.TempDir()
	snap := &vmm.Snapshot{RAM: filepath.Join(dir, "tpl.ram"), State: filepath.Join(dir, "tpl.state")}
	placeholder := filepath.Join(dir, "disk0")
	if err := os.WriteFile(placeholder, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, kernel, initrd)
	cfg.ID, cfg.Template = "tpl", snap
	cfg.Disks = []vmm.Disk{{Path: placeholder, Serial: "initos-root"}}
	tpl := startVM(t, cfg)
	waitConsole(t, cfg.ConsoleLog, regexp.MustCompile(`(TEMPLATE-READY)`), 2*time.Minute)
	time.Sleep(200 * time.Millisecond) // in its loop
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tpl.Save(sctx); err != nil {
		t.Fatal(err)
	}
	if err := tpl.Stop(sctx); err != nil {
		t.Fatal(err)
	}

	clones := startClones(t, 2, func(i int) vmm.Config {
		cfg := testConfig(t, kernel, initrd)
		cfg.ID, cfg.RestoreFrom = fmt.Sprintf("clone%d", i), snap
		cfg.Disks = []vmm.Disk{{Path: rawDisk(t, fmt.Sprintf("CLONE-%d", i)), Serial: "initos-root"}}
		return cfg
	})
	for i, c := range clones {
		want := fmt.Sprintf("CLONE-%d SERIAL=initos-root", i)
		if got := waitConsole(t, c.cfg.ConsoleLog, regexp.MustCompile(`DISK=(.*)\r?\n`), time.Minute); strings.TrimSpace(got) != want {
			t.Errorf("%s read %q from its disk, want %q", c.cfg.ID, got, want)
		}
		if b, _ := os.ReadFile(placeholder); len(b) != 0 {
			t.Errorf("the template's placeholder was written: %d bytes", len(b))
		}
		pid := c.v.Pid()
		if err := c.v.Stop(context.Background()); err != nil {
			t.Errorf("%s: stop: %v", c.cfg.ID, err)
		}
		assertClean(t, c.v, pid)
	}
}

// TestCloneFiles checks a clone's descriptors: the state first (fd 3, what
// migrate-incoming loads), the RAM copy second for virtiofs only, and a
// missing state named before qemu starts.
func TestCloneFiles(t *testing.T) {
	dir := t.TempDir()
	state, ram := filepath.Join(dir, "state"), filepath.Join(dir, "ram")
	if err := os.WriteFile(state, []byte("QEVM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ram, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		state     string
		shares    []vmm.Share
		wantFiles int
		wantErr   string
	}{
		{"9p", state, []vmm.Share{{Tag: "t", Mode: vmm.Share9p}}, 1, ""},
		{"virtiofs", state, []vmm.Share{{Tag: "t", Mode: vmm.ShareVirtiofs}}, 2, ""},
		{"missing state", filepath.Join(dir, "none"), nil, 0, "opening its template's state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := vmm.Config{ID: "c", MemoryMiB: 1, Shares: tt.shares, RestoreFrom: &vmm.Snapshot{RAM: ram, State: tt.state}}
			files, err := cloneFiles(&cfg)
			for _, f := range files {
				defer f.Close()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.state) {
					t.Fatalf("cloneFiles = %v, want %q naming %q", err, tt.wantErr, tt.state)
				}
				return
			}
			if err != nil || len(files) != tt.wantFiles {
				t.Fatalf("cloneFiles = %d files, %v; want %d", len(files), err, tt.wantFiles)
			}
			if b, _ := io.ReadAll(files[cloneStateFd-3]); string(b) != "QEVM" {
				t.Errorf("descriptor %d holds %q, want the state", cloneStateFd, b)
			}
		})
	}
}
