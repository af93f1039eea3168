package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Root != DefaultRoot || c.KernelRoot != filepath.Join(DefaultDataDir, "kernel") || c.MemoryMiB != DefaultMemoryMiB || c.VMM != "auto" {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"vmm", func(c *Config) { c.VMM = "firecracker" }, `vmm "firecracker"`},
		{"memory", func(c *Config) { c.MemoryMiB = 64 }, "memoryMiB 64 is below the minimum"},
		{"cpus", func(c *Config) { c.CPUs = -1 }, "cpus -1"},
		{"free space", func(c *Config) { c.FreeSpace = -5 }, "freeSpace -5"},
		{"relative root", func(c *Config) { c.Root = "state" }, `root "state" must be an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.json")
	if err := os.WriteFile(p, []byte(`{"vmm":"qemu","memoryMiB":256,"bootTimeout":"90s"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfigFile(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.VMM != "qemu" || c.MemoryMiB != 256 || time.Duration(c.BootTimeout) != 90*time.Second {
		t.Fatalf("loaded %+v", c)
	}
	if _, err := LoadConfigFile(filepath.Join(dir, "missing.json"), true); err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
	if _, err := LoadConfigFile(filepath.Join(dir, "missing.json"), false); err == nil {
		t.Fatal("required missing file: no error")
	}
	if err := os.WriteFile(p, []byte(`{"bootTimeout": 5}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfigFile(p, false); err == nil || !strings.Contains(err.Error(), "duration must be a string") {
		t.Fatalf("numeric duration: %v", err)
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "web-1", "x_y.z+1", strings.Repeat("a", 1024)} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "a b", "../x", strings.Repeat("a", 1025)} {
		if err := ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) accepted", id)
		}
	}
}
