package guestagent

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"

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
	if envValue(p.Env, "PATH") != defaultPath || p.Cwd != "/" {
		t.Errorf("spec %+v", p)
	}
}

func TestLookPathAndEnv(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/tool", []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(dir+"/data", []byte("x"), 0o644)
	if got, err := lookPath("tool", "/nonexistent:"+dir); err != nil || got != dir+"/tool" {
		t.Errorf("lookPath = %q, %v", got, err)
	}
	if _, err := lookPath("data", dir); err == nil {
		t.Error("a file without execute bits was found")
	}
	if _, err := lookPath("tool", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty PATH: %v", err)
	}
	if got, err := lookPath(dir+"/tool", ""); err != nil || got != dir+"/tool" {
		t.Errorf("a path is used as it is: %q, %v", got, err)
	}
	// runc's wording for what execve refuses (engines map it to 126).
	for _, p := range []string{dir, dir + "/data"} {
		if _, err := lookPath(p, ""); !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("lookPath(%q) = %v, want permission denied", p, err)
		}
	}
	if got := envValue([]string{"A=1", "PATH=/a", "PATH=/b", "B"}, "PATH"); got != "/a" {
		t.Errorf("envValue = %q", got)
	}
}
