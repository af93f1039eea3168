package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func validConfig(t *testing.T) Config {
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{
		ID:         "c1",
		Kernel:     writeFile(t, filepath.Join(dir, "vmlinux"), "k"),
		Initrd:     writeFile(t, filepath.Join(dir, "initrd"), "i"),
		Cmdline:    "initos.load=mmio",
		Disks:      []Disk{{Path: writeFile(t, filepath.Join(dir, "root.img"), "d")}},
		MemoryMiB:  256,
		CPUs:       2,
		StateDir:   filepath.Join(dir, "state"),
		ConsoleLog: filepath.Join(dir, "console.log"),
		Shares:     []Share{{Dir: share, Tag: "z", Mode: ShareVirtiofs}},
		NICs:       []NIC{{Tap: "tap0", MAC: "02:00:00:00:00:01"}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings of the error; none: valid
	}{
		{"valid", func(c *Config) {}, nil},
		{"no share, no nics, no initrd", func(c *Config) { c.Shares, c.NICs, c.Initrd = nil, nil, "" }, nil},
		{"empty id", func(c *Config) { c.ID = "" }, []string{"id is empty"}},
		{"missing kernel", func(c *Config) { c.Kernel = "/nonexistent/vmlinux" }, []string{"kernel:", "no such file"}},
		{"kernel is a dir", func(c *Config) { c.Kernel = c.Shares[0].Dir }, []string{"kernel:", "not a regular file"}},
		{"missing initrd", func(c *Config) { c.Initrd = "/nonexistent/initrd" }, []string{"initrd:"}},
		{"little memory", func(c *Config) { c.MemoryMiB = 8 }, []string{"memory 8 MiB is below the minimum of 64 MiB"}},
		{"no cpus", func(c *Config) { c.CPUs = 0 }, []string{"cpus 0 is outside 1..255"}},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, []string{`state dir "state" is not an absolute path`}},
		{"long state dir", func(c *Config) { c.StateDir = "/" + strings.Repeat("x", 100) }, []string{"too long for unix socket paths"}},
		{"relative console", func(c *Config) { c.ConsoleLog = "c.log" }, []string{"console log \"c.log\" is not an absolute path"}},
		{"missing disk", func(c *Config) { c.Disks = append(c.Disks, Disk{Path: "/nonexistent.img"}) }, []string{"disk 1:"}},
		{"bad share mode", func(c *Config) { c.Shares[0].Mode = "nfs" }, []string{`share mode "nfs"`}},
		{"bad share tag", func(c *Config) { c.Shares[0].Tag = "a,b" }, []string{`share tag "a,b"`}},
		{"long share tag", func(c *Config) { c.Shares[0].Tag = strings.Repeat("t", 37) }, []string{"share tag"}},
		{"share dir is a file", func(c *Config) { c.Shares[0].Dir = c.Kernel }, []string{"is not a directory"}},
		{"bad share cache", func(c *Config) { c.Shares[0].Cache = "always" }, []string{`cache "always"`}},
		{"relative RAM dir", func(c *Config) { c.RAMDir = "run/ram" }, []string{`RAM directory "run/ram" is not an absolute path`}},
		{"RAM alignment not a power of two", func(c *Config) { c.RAMAlign = 3 << 20 }, []string{"RAM alignment 3145728"}},
		{"RAM alignment below a page", func(c *Config) { c.RAMAlign = 2048 }, []string{"RAM alignment 2048"}},
		{"share tag twice", func(c *Config) { c.Shares = append(c.Shares, c.Shares[0]) }, []string{`share tag "z" is used twice`}},
		{"too many shares", func(c *Config) {
			for i := 0; i < MaxShares; i++ {
				c.Shares = append(c.Shares, Share{Dir: c.Shares[0].Dir, Tag: fmt.Sprintf("s%d", i), Mode: Share9p})
			}
		}, []string{"5 shares: at most 4"}},
		{"modules share", func(c *Config) { c.Modules = c.Shares[0].Dir }, nil},
		{"modules share is a file", func(c *Config) { c.Modules = c.Kernel }, []string{"is not an absolute path of a directory"}},
		{"missing modules share", func(c *Config) { c.Modules = "/nonexistent/modules" }, []string{"modules dir:", "no such file"}},
		{"share with the modules tag", func(c *Config) { c.Shares[0].Tag = ModulesTag }, []string{`share tag "initos-modules" is the modules share's`}},
		{"bad mac", func(c *Config) { c.NICs[0].MAC = "zz" }, []string{`nic 0: mac "zz"`}},
		{"multicast mac", func(c *Config) { c.NICs[0].MAC = "01:00:5e:00:00:01" }, []string{"multicast"}},
		{"long tap", func(c *Config) { c.NICs[0].Tap = "tap-name-too-long" }, []string{"tap name"}},
		{"tap twice", func(c *Config) { c.NICs = append(c.NICs, NIC{Tap: "tap0", MAC: "02:00:00:00:00:02"}) }, []string{`tap "tap0" is used twice`}},
		{"newline in cmdline", func(c *Config) { c.Cmdline = "a\nb" }, []string{"cmdline contains a newline"}},
		{"all problems at once", func(c *Config) { c.ID, c.CPUs, c.MemoryMiB = "", 0, 0 }, []string{"id is empty", "cpus 0", "memory 0"}},
		{"template with 9p", func(c *Config) {
			c.Shares[0].Mode = Share9p
			c.Template = &Snapshot{RAM: "/dev/shm/t.ram", State: "/dev/shm/t.state"}
		}, nil},
		{"template with virtiofs", func(c *Config) { c.Template = &Snapshot{RAM: "/dev/shm/t.ram", State: "/dev/shm/t.state"} }, nil},
		{"template with relative paths", func(c *Config) { c.Shares, c.Template = nil, &Snapshot{RAM: "t.ram", State: ""} },
			[]string{`template: RAM "t.ram" and state "" must be absolute paths`}},
		{"clone with 9p", func(c *Config) {
			c.Shares[0].Mode = Share9p
			c.RestoreFrom = &Snapshot{RAM: c.Kernel, State: c.Initrd}
		}, nil},
		{"clone with virtiofs", func(c *Config) { c.RestoreFrom = &Snapshot{RAM: c.Kernel, State: c.Initrd} }, nil},
		{"clone of a missing snapshot", func(c *Config) { c.Shares, c.RestoreFrom = nil, &Snapshot{RAM: "/nonexistent/t.ram", State: c.Initrd} },
			[]string{"snapshot:", "/nonexistent/t.ram"}},
		{"template and clone", func(c *Config) {
			c.Template = &Snapshot{RAM: "/t.ram", State: "/t.state"}
			c.RestoreFrom = c.Template
		}, []string{"either a template or a clone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestConsoleTail(t *testing.T) {
	dir := t.TempDir()
	var long strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&long, "line %d\n", i)
	}
	tests := []struct {
		name, content string
		n             int
		want          string
	}{
		{"last two", "a\nb\nc\n", 2, "b\nc"},
		{"more than there is", "a\nb\n", 5, "a\nb"},
		{"no trailing newline", "a\nb", 1, "b"},
		{"blank lines skipped", "a\n\n\r\nb\n\n", 2, "a\nb"},
		{"crlf and escapes", "\x1b[0mboot\r\n\x1b[1;31mpanic\x1b[0m\x07\r\n", 2, "boot\npanic"},
		{"invalid utf8", "ok\xff\n", 1, "ok?"},
		{"zero lines", "a\n", 0, ""},
		{"large file keeps the end", long.String(), 3, "line 19997\nline 19998\nline 19999"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, filepath.Join(dir, fmt.Sprint(i)), tt.content)
			if got := ConsoleTail(p, tt.n); got != tt.want {
				t.Errorf("ConsoleTail = %q, want %q", got, tt.want)
			}
		})
	}
	if got := ConsoleTail(filepath.Join(dir, "missing"), 3); got != "" {
		t.Errorf("ConsoleTail(missing) = %q, want empty", got)
	}
}

func TestDetectAccelWith(t *testing.T) {
	tests := []struct {
		name    string
		exists  []string
		openErr error
		want    string
		reason  string
	}{
		{"no /dev/kvm", nil, nil, AccelTCG, "/dev/kvm does not exist"},
		{"cannot open", []string{devKVM, sysModKVMIntel}, fs.ErrPermission, AccelTCG, "opening /dev/kvm: permission denied"},
		{"intel", []string{devKVM, sysModKVMIntel}, nil, AccelKVM, "kvm_intel"},
		{"amd", []string{devKVM, sysModKVMAMD}, nil, AccelKVM, "kvm_amd"},
		{"pvm only", []string{devKVM, sysModKVMPVM}, nil, AccelTCG, "no usable KVM for a stock kernel: /dev/kvm is PVM (kvm_pvm), stock kernels hang under it; using TCG"},
		{"pvm and intel", []string{devKVM, sysModKVMPVM, sysModKVMIntel}, nil, AccelKVM, "kvm_intel"},
		{"no vendor module", []string{devKVM}, nil, AccelTCG, "neither kvm_intel nor kvm_amd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := map[string]bool{}
			for _, e := range tt.exists {
				set[e] = true
			}
			p := AccelProbes{
				Exists: func(path string) bool { return set[path] },
				Open: func(path string) error {
					if !set[path] {
						return fs.ErrNotExist
					}
					return tt.openErr
				},
			}
			got := DetectAccelWith(p)
			if got.Name != tt.want || !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("DetectAccelWith = %+v, want %s with reason containing %q", got, tt.want, tt.reason)
			}
		})
	}
}

func TestTSCKHz(t *testing.T) {
	cpuinfo := "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2095.986\ncache size\t: 1 KB\n"
	tests := []struct {
		name  string
		files map[string]string
		want  int
	}{
		{"sysfs wins", map[string]string{"/sys/devices/system/cpu/cpu0/tsc_freq_khz": "2904000\n", "/proc/cpuinfo": cpuinfo}, 2904000},
		{"cpuinfo", map[string]string{"/proc/cpuinfo": cpuinfo}, 2095986},
		{"bad sysfs falls back to cpuinfo", map[string]string{"/sys/devices/system/cpu/cpu0/tsc_freq_khz": "x", "/proc/cpuinfo": cpuinfo}, 2095986},
		{"no cpu MHz", map[string]string{"/proc/cpuinfo": "processor : 0\n"}, DefaultTSCKHz},
		{"garbage MHz", map[string]string{"/proc/cpuinfo": "cpu MHz : fast\n"}, DefaultTSCKHz},
		{"nothing", nil, DefaultTSCKHz},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := func(p string) ([]byte, error) {
				if s, ok := tt.files[p]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			}
			if got := tscKHz(read); got != tt.want {
				t.Errorf("tscKHz = %d, want %d", got, tt.want)
			}
		})
	}
	if k := TSCKHz(); k <= 0 {
		t.Errorf("TSCKHz() = %d on this host", k)
	}
}

func TestVirtiofsdFlavor(t *testing.T) {
	tests := []struct {
		name, help string
		share      Share
		want       VirtiofsdFlavor
		args       []string
	}{
		{"C", "    -o source=PATH             shared directory tree\n", Share{Dir: `/d/a,b\c`}, VirtiofsdC,
			[]string{"--fd=3", "-o", `source=/d/a\,b\\c`, "-o", "cache=none"}},
		{"C cached with xattrs", "    -o source=PATH\n", Share{Dir: "/d", Cache: CacheAuto, Xattr: true}, VirtiofsdC,
			[]string{"--fd=3", "-o", "source=/d", "-o", "cache=auto", "-o", "xattr"}},
		{"Rust", "      --shared-dir <SHARED_DIR>  Shared directory path\n", Share{Dir: `/d/a,b\c`}, VirtiofsdRust,
			[]string{"--fd=3", `--shared-dir=/d/a,b\c`, "--cache=never"}},
		{"Rust cached with xattrs", "  --shared-dir <SHARED_DIR>\n", Share{Dir: "/d", Cache: CacheAuto, Xattr: true}, VirtiofsdRust,
			[]string{"--fd=3", "--shared-dir=/d", "--cache=auto", "--xattr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := VirtiofsdFlavorOf([]byte(tt.help))
			if err != nil || f != tt.want {
				t.Fatalf("VirtiofsdFlavorOf = %v, %v; want %v", f, err, tt.want)
			}
			got := VirtiofsdArgs(f, 3, tt.share)
			if strings.Join(got, "|") != strings.Join(tt.args, "|") {
				t.Errorf("VirtiofsdArgs = %q, want %q", got, tt.args)
			}
		})
	}
	if _, err := VirtiofsdFlavorOf([]byte("usage: something else")); err == nil {
		t.Error("VirtiofsdFlavorOf(unknown help) succeeded")
	}
}

func TestFindVirtiofsd(t *testing.T) {
	if _, err := FindVirtiofsd("/nonexistent/virtiofsd"); !errors.Is(err, ErrNoVirtiofsd) {
		t.Errorf("FindVirtiofsd(missing) = %v, want ErrNoVirtiofsd", err)
	}
	exe := writeFile(t, filepath.Join(t.TempDir(), "vfsd"), "#!/bin/sh\n")
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := FindVirtiofsd(exe); err != nil || got != exe {
		t.Errorf("FindVirtiofsd(%q) = %q, %v", exe, got, err)
	}
}
