package shim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
)

func TestRecordCleanup(t *testing.T) {
	bundle := t.TempDir()
	state := filepath.Join(t.TempDir(), "c1")
	disk := filepath.Join(t.TempDir(), "c1.img")
	for _, d := range []string{state, filepath.Join(bundle, "rootfs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(disk, []byte("img"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "console.log"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A pid that runs no VMM of this state dir is left alone.
	r := &record{StateDir: state, Disk: disk, VMMPid: os.Getpid()}
	if err := r.save(bundle); err != nil {
		t.Fatal(err)
	}
	got, err := readRecord(bundle)
	if err != nil || *got != *r {
		t.Fatalf("readRecord = %+v, %v; want %+v", got, err, r)
	}
	if err := got.cleanup(bundle); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{state, disk, filepath.Join(bundle, recordFile)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after cleanup: %v", p, err)
		}
	}
	// Again: nothing left is no error.
	if err := got.cleanup(bundle); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

func TestShimAddress(t *testing.T) {
	dir := t.TempDir()
	if got := shimAddress(dir); got != "" {
		t.Errorf("no files: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "address"), []byte("unix:///run/containerd/s/old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := shimAddress(dir); got != "unix:///run/containerd/s/old" {
		t.Errorf("address file: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap.json"), []byte(`{"version":3,"address":"unix:///run/containerd/s/new","protocol":"ttrpc"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := shimAddress(dir); got != "unix:///run/containerd/s/new" {
		t.Errorf("bootstrap.json: %q", got)
	}
}

func TestSnapshotKey(t *testing.T) {
	empty, written := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(written, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay := func(upper string) []mount.Mount {
		return []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/w", "upperdir=" + upper, "lowerdir=/l2:/l1"}}}
	}
	tests := []struct {
		name string
		ms   []mount.Mount
		want string
	}{
		{"fresh overlay", overlay(empty), "overlay:/l2:/l1"},
		{"written upper dir", overlay(written), ""},
		{"missing upper dir", overlay(filepath.Join(empty, "nope")), ""},
		{"read-only view", []mount.Mount{{Type: "overlay", Options: []string{"lowerdir=/l2:/l1"}}}, "overlay:/l2:/l1"},
		{"read-only bind", []mount.Mount{{Type: "bind", Source: "/s/1", Options: []string{"ro", "rbind"}}}, "bind:/s/1"},
		{"writable bind", []mount.Mount{{Type: "bind", Source: "/s/1", Options: []string{"rw", "rbind"}}}, ""},
		{"no mounts", nil, ""},
		{"two mounts", append(overlay(empty), overlay(empty)...), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := snapshotKey(tc.ms); got != tc.want {
				t.Errorf("snapshotKey = %q, want %q", got, tc.want)
			}
		})
	}
}
