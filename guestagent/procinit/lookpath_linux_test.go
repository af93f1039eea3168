package procinit

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestLookPathAndEnv(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/tool", []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(dir+"/data", []byte("x"), 0o644)
	if got, err := LookPath("tool", "/nonexistent:"+dir); err != nil || got != dir+"/tool" {
		t.Errorf("LookPath = %q, %v", got, err)
	}
	if _, err := LookPath("data", dir); err == nil {
		t.Error("a file without execute bits was found")
	}
	if _, err := LookPath("tool", ""); !errors.Is(err, ErrExecutableNotFound) {
		t.Errorf("empty PATH: %v", err)
	}
	if got, err := LookPath(dir+"/tool", ""); err != nil || got != dir+"/tool" {
		t.Errorf("a path is used as it is: %q, %v", got, err)
	}
	// runc's wording for what execve refuses (engines map it to 126).
	for _, p := range []string{dir, dir + "/data"} {
		if _, err := LookPath(p, ""); !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("LookPath(%q) = %v, want permission denied", p, err)
		}
	}
	if got := envValue([]string{"A=1", "PATH=/a", "PATH=/b", "B"}, "PATH"); got != "/a" {
		t.Errorf("envValue = %q", got)
	}
}
