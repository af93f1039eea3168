package cloudhypervisor

import (
	"context"
	"encoding/json"
	"errors"
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

// writeSnapshot writes a template's snapshot as Save leaves it, its
// config.json naming the template's serial file and vsock socket.
func writeSnapshot(t *testing.T) *vmm.Snapshot {
	t.Helper()
	dir := t.TempDir()
	snap := &vmm.Snapshot{RAM: filepath.Join(dir, "ram"), State: filepath.Join(dir, "state")}
	files := fakeSnapshotFiles(filepath.Join(dir, "console.log"), filepath.Join(dir, "vsock.sock"))
	for name, path := range map[string]string{snapConfig: snapshotConfig(snap), snapMemory: snap.RAM, snapState: snap.State} {
		if err := os.WriteFile(path, []byte(files[name]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// vmLog is the fake cloud-hypervisor's log: its pid, what it restored and
// the API requests it served.
func vmLog(cfg vmm.Config) string {
	b, _ := os.ReadFile(cfg.SocketPath(chLog))
	return string(b)
}

// requests are the API requests of a log, in order.
func requests(log string) []string {
	var r []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "GET ") || strings.HasPrefix(l, "PUT ") {
			r = append(r, l)
		}
	}
	return r
}

var pidLine = regexp.MustCompile(`(?m)^pid (\d+)$`)

// assertGone checks that no process whose pid a log in the state dir
// names (cloud-hypervisor's, each virtiofsd's) exists, that no socket
// and no restore directory is left, and that the VM has no pid.
func assertGone(t *testing.T, v *VM, cfg vmm.Config) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(cfg.StateDir, "*.log"))
	var pids int
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for _, m := range pidLine.FindAllStringSubmatch(string(b), -1) {
			pid, _ := strconv.Atoi(m[1])
			pids++
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d of %s still exists (%v)", pid, filepath.Base(l), err)
			}
		}
	}
	for _, p := range append(sockets(v), cfg.SocketPath(restoreDir)) {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	if v.Pid() != 0 && pids == 0 {
		t.Errorf("vm has pid %d and no log names it", v.Pid())
	}
}

// templateShape makes a config a template of a VM with a disk, a
// virtiofs share and a NIC.
func templateShape(t *testing.T) func(c *vmm.Config) {
	dir := t.TempDir()
	return func(c *vmm.Config) {
		c.Template = &vmm.Snapshot{RAM: filepath.Join(dir, "ram"), State: filepath.Join(dir, "state")}
		c.Shares = []vmm.Share{{Dir: dir, Tag: "z", Mode: vmm.ShareVirtiofs}}
		c.NICs = []vmm.NIC{{MAC: "02:00:00:00:00:01"}}
	}
}

// cloneOf makes a config a clone of snap with its own disk (the root's
// serial), share and NIC.
func cloneOf(t *testing.T, snap *vmm.Snapshot) func(c *vmm.Config) {
	dir := t.TempDir()
	return func(c *vmm.Config) {
		c.RestoreFrom = snap
		c.Disks[0].Serial = "initos-root"
		c.Shares = []vmm.Share{{Dir: dir, Tag: "z", Mode: vmm.ShareVirtiofs}}
		c.NICs = []vmm.NIC{{Tap: "tap0", MAC: "02:00:00:00:00:02"}}
	}
}

// TestTemplateSaveRestore saves a template on the fake and restores a
// clone of it: the template's command line has none of the container's
// devices; Save pauses, snapshots into a directory beside State, moves the
// files and shuts cloud-hypervisor down; the clone's cloud-hypervisor is
// restored from a directory of its own whose config.json names its serial
// file and vsock socket, is resumed, and gets its disk, share and NIC by
// hot-add; nothing is left of either.
func TestTemplateSaveRestore(t *testing.T) {
	ctx := context.Background()
	tv, tcfg := fakeVMWith(t, "serve", Options{}, templateShape(t))
	for _, a := range tv.Args() {
		if a == "--disk" || a == "--fs" || a == "--net" {
			t.Errorf("template's command line has %s: %q", a, tv.Args())
		}
	}
	if !strings.Contains(strings.Join(tv.Args(), " "), "--memory size=128M,shared=on") {
		t.Errorf("template's memory is not shared: %q", tv.Args())
	}
	if err := tv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tv.Save(ctx); err != nil {
		t.Fatal(err)
	}
	snap := tcfg.Template
	want := []string{
		"PUT /api/v1/vm.pause",
		`PUT /api/v1/vm.snapshot {"destination_url":"file://` + snap.State + `.d"}`,
		"PUT /api/v1/vm.shutdown",
		"PUT /api/v1/vmm.shutdown",
	}
	if got := requests(vmLog(tcfg)); len(got) < len(want) || strings.Join(got[len(got)-len(want):], "\n") != strings.Join(want, "\n") {
		t.Errorf("template's requests:\n%s\nwant them to end with:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for path, content := range map[string]string{snap.RAM: "fake RAM", snap.State: "fake state"} {
		if b, err := os.ReadFile(path); err != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q", path, b, err, content)
		}
	}
	if _, err := os.Stat(snap.State + ".d"); !os.IsNotExist(err) {
		t.Errorf("the snapshot's directory is left behind (%v)", err)
	}
	if err := tv.Wait(); err != nil {
		t.Errorf("template's Wait after Save = %v", err)
	}
	assertGone(t, tv, tcfg)

	cv, ccfg := fakeVMWith(t, "serve", Options{Virtiofsd: os.Args[0]}, cloneOf(t, snap))
	wantArgs := []string{"--api-socket", "path=" + ccfg.SocketPath(apiSocket), "--restore", "source_url=file://" + ccfg.SocketPath(restoreDir)}
	if strings.Join(cv.Args(), " ") != strings.Join(wantArgs, " ") {
		t.Errorf("clone's command line %q, want %q", cv.Args(), wantArgs)
	}
	if err := cv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	log := vmLog(ccfg)
	restored := "restored serial=" + ccfg.ConsoleLog + " vsock=" + ccfg.SocketPath(vsockSocket) + ` state="fake state" memory="fake RAM"`
	if !strings.Contains(log, "restore source_url=file://"+ccfg.SocketPath(restoreDir)+"\n") || !strings.Contains(log, restored+"\n") {
		t.Errorf("clone's log:\n%s\nwant its restore from its own directory and:\n%s", log, restored)
	}
	want = []string{
		"GET /api/v1/vm.info",
		"PUT /api/v1/vm.resume",
		`PUT /api/v1/vm.add-disk {"path":"` + ccfg.Disks[0].Path + `","id":"disk0","serial":"initos-root"}`,
		`PUT /api/v1/vm.add-fs {"tag":"z","socket":"` + ccfg.SocketPath(vmm.VirtiofsSocket(0)) + `","num_queues":1,"queue_size":1024,"id":"fs0"}`,
		`PUT /api/v1/vm.add-net {"tap":"tap0","mac":"02:00:00:00:00:02","id":"net0"}`,
	}
	if got := requests(log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("clone's requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Lstat(ccfg.SocketPath(restoreDir)); !os.IsNotExist(err) {
		t.Errorf("the restore directory outlived Start (%v)", err)
	}
	if b, err := os.ReadFile(ccfg.ConsoleLog); err != nil || string(b) != "fake guest booted\n" {
		t.Errorf("clone's console = %q, %v", b, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := cv.DialAgent(dctx)
	if err != nil {
		t.Fatalf("DialAgent on the clone's own vsock socket: %v", err)
	}
	c.Close()
	if err := cv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertGone(t, cv, ccfg)
	// The template's files are the next clone's.
	if b, err := os.ReadFile(snapshotConfig(snap)); err != nil || !strings.Contains(string(b), tcfg.ConsoleLog) {
		t.Errorf("template's config.json = %s, %v", b, err)
	}
}

func TestSaveFailures(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		mutate func(c *vmm.Config)
		start  bool
		want   error
		msg    string
	}{
		{"snapshot refused", "refuse-snapshot", templateShape(t), true, vmm.ErrVMMRequest, "could not be snapshotted: fake refuses"},
		{"snapshot without its state", "partial-snapshot", templateShape(t), true, os.ErrNotExist, "state.json"},
		{"not a template", "serve", func(*vmm.Config) {}, true, vmm.ErrInvalidConfig, "the vm is not a template"},
		{"not started", "serve", templateShape(t), false, vmm.ErrNotStarted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			v, cfg := fakeVMWith(t, tt.mode, Options{}, tt.mutate)
			if tt.start {
				if err := v.Start(ctx); err != nil {
					t.Fatal(err)
				}
			}
			err := v.Save(ctx)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Save = %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if s := cfg.Template; s != nil {
				if !strings.Contains(err.Error(), "saving to") && tt.start {
					t.Errorf("Save = %v: the operation is not named", err)
				}
				for _, f := range []string{s.RAM, s.State, snapshotConfig(s), s.State + ".d"} {
					if _, err := os.Stat(f); !os.IsNotExist(err) {
						t.Errorf("%s left behind by a failed Save (%v)", f, err)
					}
				}
			}
			if err := v.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			assertGone(t, v, cfg)
		})
	}
}

// TestRestoreFailures: a clone that cannot be restored fails Start with
// an error naming the step, in bounded time, and leaves no process,
// socket or restore directory.
func TestRestoreFailures(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		before func(t *testing.T, s *vmm.Snapshot) // after New, before Start
		want   error
		msg    string
	}{
		{"restore exits at once", "serve", func(t *testing.T, s *vmm.Snapshot) {
			if err := os.Remove(s.State); err != nil {
				t.Fatal(err)
			}
		}, vmm.ErrVMExited, "Error restoring VM: open"},
		{"api never answers", "mute", nil, context.DeadlineExceeded, "not ready after"},
		{"nic refused", "refuse-net", nil, vmm.ErrNotReadyable, `adding nic 0 (tap "tap0"): vmm control request failed: PUT vm.add-net: 500 Internal Server Error: Error from API: The new network device could not be added`},
		{"template with a disk", "serve", func(t *testing.T, s *vmm.Snapshot) {
			b := strings.Replace(fakeSnapshotFiles("/c", "/v")[snapConfig], `"disks":null`, `"disks":[{"path":"/tpl/disk0"}]`, 1)
			if err := os.WriteFile(snapshotConfig(s), []byte(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrBadSnapshot, "has disks of its template's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := writeSnapshot(t)
			v, cfg := fakeVMWith(t, tt.mode, Options{Virtiofsd: os.Args[0], StartTimeout: 500 * time.Millisecond}, cloneOf(t, snap))
			if tt.before != nil {
				tt.before(t, snap)
			}
			t0 := time.Now()
			err := v.Start(context.Background())
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Start = %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if !strings.Contains(err.Error(), `vm "t"`) {
				t.Errorf("Start = %v: the vm is not named", err)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("Start took %s with a 500ms StartTimeout", d)
			}
			if v.Pid() != 0 {
				t.Errorf("Pid after a failed Start = %d", v.Pid())
			}
			assertGone(t, v, cfg)
		})
	}
}

func TestWriteRestoreDir(t *testing.T) {
	tests := []struct {
		name   string
		config func(base string) string // "": no config.json
		want   string                   // "": success
	}{
		{"template's config", func(b string) string { return b }, ""},
		{"a disk", func(b string) string { return strings.Replace(b, `"disks":null`, `"disks":[{"path":"/d"}]`, 1) }, "has disks"},
		{"a share", func(b string) string { return strings.Replace(b, `"fs":null`, `"fs":[{"tag":"z"}]`, 1) }, "has fs"},
		{"a nic", func(b string) string { return strings.Replace(b, `"net":null`, `"net":[{"tap":"t"}]`, 1) }, "has net"},
		{"no vsock", func(b string) string { return strings.Replace(b, `"vsock"`, `"vsock-not"`, 1) }, "no serial port or no vsock"},
		{"not json", func(string) string { return "{" }, "unexpected end of JSON"},
		{"missing", func(string) string { return "" }, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := writeSnapshot(t)
			base, _ := os.ReadFile(snapshotConfig(snap))
			if c := tt.config(string(base)); c == "" {
				os.Remove(snapshotConfig(snap))
			} else if err := os.WriteFile(snapshotConfig(snap), []byte(c), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			cfg := vmm.Config{StateDir: filepath.Join(dir, "s"), ConsoleLog: filepath.Join(dir, "console.log"), RestoreFrom: snap}
			err := writeRestoreDir(&cfg)
			rd := cfg.SocketPath(restoreDir)
			if tt.want != "" {
				if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("writeRestoreDir = %v, want ErrBadSnapshot containing %q", err, tt.want)
				}
				if _, err := os.Lstat(rd); !os.IsNotExist(err) {
					t.Errorf("%s made by a failed writeRestoreDir (%v)", rd, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var c map[string]any
			b, err := os.ReadFile(filepath.Join(rd, snapConfig))
			if err != nil || json.Unmarshal(b, &c) != nil {
				t.Fatalf("clone's config.json = %s, %v", b, err)
			}
			serial, _ := c["serial"].(map[string]any)
			vsock, _ := c["vsock"].(map[string]any)
			if serial["file"] != cfg.ConsoleLog || serial["mode"] != "File" || vsock["socket"] != cfg.SocketPath(vsockSocket) || vsock["id"] != "_vsock0" || c["cpus"] == nil {
				t.Errorf("clone's config.json = %s: want the clone's serial file and vsock socket, the rest the template's", b)
			}
			for name, target := range map[string]string{snapState: snap.State, snapMemory: snap.RAM} {
				if got, err := os.Readlink(filepath.Join(rd, name)); err != nil || got != target {
					t.Errorf("%s -> %q, %v; want %q", name, got, err, target)
				}
			}
		})
	}
}
