package procview

import (
	"context"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// mountView mounts an FS of src in a temporary directory (root only) and
// unmounts it when the test ends.
func mountView(t *testing.T, src Source) (dir string, v *FS) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a FUSE file system needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	dir = t.TempDir()
	host := func(name string) ([]byte, error) {
		switch name {
		case "stat":
			return []byte("cpu  1 2 3\nbtime 1764576000\n"), nil
		case "uptime":
			return []byte("100.00 150.00\n"), nil
		}
		return nil, os.ErrNotExist
	}
	v = New(src, host, log.New(io.Discard, "", 0))
	fd, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := Mount(fd, dir); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	srv, err := Serve(fd, v)
	if err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
		srv.Wait()
	})
	return dir, v
}

func TestServe(t *testing.T) {
	var lists atomic.Int32
	procs := []*agentapi.ProcessInfo{
		{Pid: 57, Ppid: 1, Comm: "sh", Args: []string{"sh", "-c", "x"},
			Stat: guestStat("57", "sh", "1", "57", "57", "-1", "250"), Status: "Name:\tsh\nPid:\t57\nUid:\t0\t0\t0\t0\nNSpid:\t57\t1\n", Pidns: "pid:[4026532210]"},
		{Pid: 60, Ppid: 57, Comm: "sleep", Args: []string{"sleep", "9"},
			Stat: guestStat("60", "sleep", "57", "57", "57", "-1", "260"), Status: "Name:\tsleep\nPid:\t60\nNSpid:\t60\t2\n", Pidns: "pid:[4026532210]"},
	}
	dir, _ := mountView(t, func(ctx context.Context) (*agentapi.ListProcessesResponse, error) {
		lists.Add(1)
		return &agentapi.ListProcessesResponse{BootUnixNano: 1764576010e9, Processes: procs}, nil
	})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if want := []string{"1", "2", "stat", "uptime"}; !slices.Equal(names, want) {
		t.Errorf("ls /proc = %v, want %v", names, want)
	}
	tests := []struct{ path, want string }{
		{"1/stat", guestStat("1", "sh", "0", "1", "1", "-1", "1250")},
		{"1/status", "Name:\tsh\nPid:\t1\nUid:\t0\t0\t0\t0\nNSpid:\t1\n"},
		{"1/cmdline", "sh\x00-c\x00x\x00"},
		{"2/stat", guestStat("2", "sleep", "1", "1", "1", "-1", "1260")},
		{"stat", "cpu  1 2 3\nbtime 1764576000\n"},
		{"uptime", "100.00 150.00\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(dir, tt.path))
			if err != nil || string(got) != tt.want {
				t.Errorf("read %s = %q, %v; want %q", tt.path, got, err, tt.want)
			}
		})
	}
	if l, err := os.Readlink(filepath.Join(dir, "2/ns/pid")); err != nil || l != "pid:[4026532210]" {
		t.Errorf("readlink 2/ns/pid = %q, %v", l, err)
	}
	for _, p := range []string{"3/stat", "1/environ", "1/ns/net", "01"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s = %v, want not found", p, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "1/stat"), []byte("x"), 0o644); err == nil {
		t.Error("writing 1/stat succeeded")
	}
	// One listing served the readdir and the reads after it; a new
	// readdir lists again.
	n := lists.Load()
	if n != 1 {
		t.Errorf("%d listings for one readdir and its reads, want 1", n)
	}
	if _, err := os.ReadDir(dir); err != nil || lists.Load() != n+1 {
		t.Errorf("a second readdir: %v, %d listings; want a new one", err, lists.Load())
	}
}

func TestServeFailures(t *testing.T) {
	var fail atomic.Bool
	dir, v := mountView(t, func(ctx context.Context) (*agentapi.ListProcessesResponse, error) {
		if fail.Load() {
			<-ctx.Done() // a VM that does not answer
			return nil, ctx.Err()
		}
		return &agentapi.ListProcessesResponse{}, nil
	})
	v.timeout = 200 * time.Millisecond
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 2 {
		t.Errorf("ls of a container without processes = %v, %v; want stat and uptime", entries, err)
	}
	fail.Store(true)
	start := time.Now()
	_, err := os.ReadDir(dir)
	if !errors.Is(err, unix.EIO) {
		t.Errorf("ls while the agent does not answer = %v, want EIO", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("ls took %v, want the listing's bound", d)
	}
}
