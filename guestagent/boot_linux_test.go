package guestagent

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMountBasics(t *testing.T) {
	var dirs, mounts []string
	mkdir := func(p string, _ os.FileMode) error { dirs = append(dirs, p); return nil }
	mount := func(source, target, fstype string, flags uintptr, data string) error {
		mounts = append(mounts, fstype+" "+target+" "+data)
		if target == "/dev" {
			return unix.EBUSY // already mounted by the kernel: fine
		}
		return nil
	}
	if err := mountBasics(mkdir, mount); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"proc /proc ", "sysfs /sys ", "devtmpfs /dev mode=0755",
		"devpts /dev/pts newinstance,ptmxmode=0666,mode=0620,gid=5",
		"tmpfs /dev/shm mode=1777", "tmpfs /run mode=0755", "tmpfs /tmp mode=1777",
	}
	if !reflect.DeepEqual(mounts, want) {
		t.Errorf("mounts\n got %q\nwant %q", mounts, want)
	}
	if len(dirs) != len(want) {
		t.Errorf("created %q", dirs)
	}
	failing := func(source, target, fstype string, flags uintptr, data string) error {
		if target == "/sys" {
			return unix.ENODEV
		}
		return nil
	}
	if err := mountBasics(mkdir, failing); !errors.Is(err, unix.ENODEV) {
		t.Errorf("failing mount: %v", err)
	}
}

func TestProgramSpec(t *testing.T) {
	p := programSpec([]string{"/bin/sh", "-c", "true"})
	if err := validateProcess(p); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.Env, "PATH="+defaultPath) || p.Cwd != "/" {
		t.Errorf("spec %+v", p)
	}
}

func TestLinksSettle(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		set  time.Time
		want time.Duration
	}{
		{"no link changed", time.Time{}, 0},
		{"just now", now, linkwatchWindow},
		{"half a second ago", now.Add(-500 * time.Millisecond), linkwatchWindow - 500*time.Millisecond},
		{"window passed", now.Add(-linkwatchWindow), 0},
		{"long ago", now.Add(-time.Minute), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linksSettle(tc.set, now); got != tc.want {
				t.Errorf("linksSettle = %v, want %v", got, tc.want)
			}
		})
	}
	if linkwatchWindow <= time.Second {
		t.Errorf("linkwatchWindow %v is not past the kernel's one second", linkwatchWindow)
	}
}
