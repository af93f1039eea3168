package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpioRecord is one entry read back from a newc archive.
type cpioRecord struct {
	name                            string
	ino, mode, uid, gid, nlink      uint32
	mtime, rmajor, rminor, devmajor uint32
	data                            []byte
}

// readCpio parses a newc archive strictly: magic, hex fields, zero check
// field, zero padding to 4 bytes, a final TRAILER!!! and nothing after it.
func readCpio(t *testing.T, b []byte) []cpioRecord {
	t.Helper()
	var recs []cpioRecord
	off := 0
	pad := func() {
		for off%4 != 0 {
			if off >= len(b) || b[off] != 0 {
				t.Fatalf("offset %d: padding is not zero", off)
			}
			off++
		}
	}
	for {
		if off+110 > len(b) {
			t.Fatalf("offset %d: truncated header", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("offset %d: magic %q", off, h[:6])
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("offset %d field %d: %v", off, i, err)
			}
			f[i] = uint32(v)
		}
		if f[12] != 0 {
			t.Errorf("offset %d: check field %d", off, f[12])
		}
		off += 110
		nameLen := int(f[11])
		if nameLen < 1 || off+nameLen > len(b) || b[off+nameLen-1] != 0 {
			t.Fatalf("offset %d: bad name size %d", off, nameLen)
		}
		r := cpioRecord{name: string(b[off : off+nameLen-1]), ino: f[0], mode: f[1], uid: f[2], gid: f[3],
			nlink: f[4], mtime: f[5], devmajor: f[7], rmajor: f[9], rminor: f[10]}
		off += nameLen
		pad()
		size := int(f[6])
		if off+size > len(b) {
			t.Fatalf("%s: truncated data", r.name)
		}
		r.data = b[off : off+size]
		off += size
		pad()
		if r.name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return recs
		}
		recs = append(recs, r)
	}
}

func TestWriteCpio(t *testing.T) {
	var b bytes.Buffer
	err := writeCpio(&b, []cpioEntry{
		{name: "z", mode: modeFile | 0o644, data: []byte("12345")},
		{name: "a", mode: modeDir | 0o755},
		{name: "a/c", mode: modeChar | 0o600, rmajor: 5, rmin: 1},
		{name: "a/e", mode: modeFile | 0o644},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", b.Len())
	}
	recs := readCpio(t, b.Bytes())
	want := []cpioRecord{
		{name: "a", ino: 1, mode: modeDir | 0o755, nlink: 2},
		{name: "a/c", ino: 2, mode: modeChar | 0o600, nlink: 1, rmajor: 5, rminor: 1},
		{name: "a/e", ino: 3, mode: modeFile | 0o644, nlink: 1},
		{name: "z", ino: 4, mode: modeFile | 0o644, nlink: 1},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d entries, want %d", len(recs), len(want))
	}
	for i, w := range want {
		r := recs[i]
		r.data = nil
		if fmt.Sprint(r) != fmt.Sprint(w) {
			t.Errorf("entry %d: got %+v, want %+v", i, r, w)
		}
	}
	if string(recs[3].data) != "12345" {
		t.Errorf("data %q", recs[3].data)
	}
	if err := writeCpio(&bytes.Buffer{}, []cpioEntry{{name: "x"}, {name: "x"}}); err == nil {
		t.Error("duplicate entry accepted")
	}
}

func writeAgent(t testing.TB, data []byte) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(helperOf(p), helperData, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// helperData is the process helper writeAgent puts next to each agent.
var helperData = []byte("\x7fELF pretend process helper")

// helperOf is the process helper next to the agent agent.
func helperOf(agent string) string { return filepath.Join(filepath.Dir(agent), HelperName) }

// checkLayout checks an initrd against docs/contracts.md and returns its
// entries by name.
func checkLayout(t *testing.T, path string, agent []byte) map[string]cpioRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := readCpio(t, b)
	byName := map[string]cpioRecord{}
	for i, r := range recs {
		if i > 0 && recs[i-1].name >= r.name {
			t.Errorf("%q after %q: not sorted", r.name, recs[i-1].name)
		}
		if r.ino != uint32(i+1) || r.uid != 0 || r.gid != 0 || r.mtime != 0 {
			t.Errorf("%s: ino %d uid %d gid %d mtime %d", r.name, r.ino, r.uid, r.gid, r.mtime)
		}
		byName[r.name] = r
	}
	for _, d := range []string{".", "dev", "lib", "lib/modules", "proc", "sbin", "sys", "run", "tmp"} {
		if r, ok := byName[d]; !ok || r.mode != modeDir|0o755 {
			t.Errorf("directory %s: %+v, present %v", d, r.mode, ok)
		}
	}
	if r := byName["dev/console"]; r.mode != modeChar|0o600 || r.rmajor != 5 || r.rminor != 1 {
		t.Errorf("dev/console: mode %o rdev %d:%d", r.mode, r.rmajor, r.rminor)
	}
	if r := byName["init"]; r.mode != modeFile|0o755 || !bytes.Equal(r.data, agent) {
		t.Errorf("init: mode %o, %d bytes, want the agent's %d", r.mode, len(r.data), len(agent))
	}
	if r := byName["sbin/"+HelperName]; r.mode != modeFile|0o755 || len(r.data) == 0 {
		t.Errorf("sbin/%s: mode %o, %d bytes, want the process helper", HelperName, r.mode, len(r.data))
	}
	if r := byName["sbin/"+ModprobeName]; r.mode != modeSymlink|0o777 || string(r.data) != "/init" {
		t.Errorf("sbin/%s: mode %o -> %q, want a symlink to /init", ModprobeName, r.mode, r.data)
	}
	idx, ok := byName["lib/modules/"+ModIndexName]
	if !ok || idx.mode != modeFile|0o644 {
		t.Fatalf("%s: %+v", ModIndexName, idx)
	}
	if _, err := ReadModIndex(bytes.NewReader(idx.data)); err != nil {
		t.Errorf("%s: %v", ModIndexName, err)
	}
	order, ok := byName["lib/modules/load.order"]
	if !ok || order.mode != modeFile|0o644 {
		t.Fatalf("load.order: %+v", order)
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSuffix(string(order.data), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasSuffix(f[0], ".ko") {
			t.Errorf("load.order line %q", line)
			continue
		}
		for _, g := range strings.Split(f[1], ",") {
			if _, err := GroupModules(g); err != nil {
				t.Errorf("load.order line %q: %v", line, err)
			}
		}
		listed = append(listed, "lib/modules/"+f[0])
	}
	var files []string
	for name, r := range byName {
		if strings.HasPrefix(name, "lib/modules/") && name != "lib/modules/load.order" && name != "lib/modules/"+ModIndexName {
			files = append(files, name)
			if r.mode != modeFile|0o644 || !bytes.HasPrefix(r.data, elfMagic) {
				t.Errorf("%s: mode %o, not ELF", name, r.mode)
			}
		}
	}
	slices.Sort(files)
	sortedListed := slices.Sorted(slices.Values(listed))
	if !slices.Equal(files, sortedListed) {
		t.Errorf("modules %v, load.order lists %v", files, listed)
	}
	other := len(byName) - len(files) - 15 // 9 dirs, console, init, load.order, the index, the helper, the modprobe link
	if other != 0 {
		t.Errorf("%d unexpected entries", other)
	}
	return byName
}

func TestBuild(t *testing.T) {
	k := fakeKernel(t)
	agentData := []byte("\x7fELF pretend agent")
	agent := writeAgent(t, agentData)
	cache1, cache2 := t.TempDir(), t.TempDir()
	p1, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache1})
	if err != nil {
		t.Fatal(err)
	}
	recs := checkLayout(t, p1, agentData)
	// Named for its kernel, as its module index and alias table are
	// (RemoveKernel finds them by it).
	for _, prefix := range []string{"initrd-", "modindex-", "modaliases-"} {
		m, _ := filepath.Glob(filepath.Join(cache1, prefix+k.Release+"-*"))
		if len(m) != 1 {
			t.Errorf("%s files of release %s in the cache: %q, want one", prefix, k.Release, m)
		}
	}
	order := string(recs["lib/modules/load.order"].data)
	for _, line := range []string{"virtio_ring.ko mmio,pci,blk,console,net,virtiofs,9p,vsock\n", "btrfs.ko btrfs\n", "crc32c_generic.ko btrfs\n", "xxhash_generic.ko btrfs\n"} {
		if !strings.Contains(order, line) {
			t.Errorf("load.order lacks %q:\n%s", line, order)
		}
	}
	// The .ko.xz module is stored uncompressed.
	if !bytes.HasPrefix(recs["lib/modules/xxhash_generic.ko"].data, elfMagic) {
		t.Error("xxhash_generic.ko not decompressed")
	}

	// Same inputs, other cache: same name, same bytes.
	p2, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache2})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if filepath.Base(p1) != filepath.Base(p2) || !bytes.Equal(b1, b2) {
		t.Errorf("two builds differ: %s (%d bytes), %s (%d bytes)", p1, len(b1), p2, len(b2))
	}

	// A cache hit does not rebuild: mark the file.
	os.WriteFile(p1, []byte("cached"), 0o644)
	if p, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache1}); err != nil || p != p1 {
		t.Fatalf("cache hit: %q, %v", p, err)
	}
	if b, _ := os.ReadFile(p1); string(b) != "cached" {
		t.Error("cache hit rebuilt the initrd")
	}

	// Other agent, other groups: other files.
	agent2 := writeAgent(t, []byte("\x7fELF another agent"))
	p3, err := Build(Options{Kernel: k, AgentPath: agent2, HelperPath: helperOf(agent2), CacheDir: cache1})
	if err != nil || p3 == p1 {
		t.Fatalf("new agent: %q, %v", p3, err)
	}
	p4, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache1, Groups: []string{"mmio", "blk"}})
	if err != nil || p4 == p1 {
		t.Fatalf("groups: %q, %v", p4, err)
	}
	recs = checkLayout(t, p4, agentData)
	want := "virtio_ring.ko mmio,blk\nvirtio.ko mmio,blk\nvirtio_mmio.ko mmio\nvirtio_blk.ko blk\n"
	if got := string(recs["lib/modules/load.order"].data); got != want {
		t.Errorf("load.order:\n%s\nwant:\n%s", got, want)
	}
	ents, _ := os.ReadDir(cache1)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind in the cache: %s", e.Name())
		}
	}
}

func TestBuildErrors(t *testing.T) {
	k := fakeKernel(t)
	agent := writeAgent(t, []byte("agent"))
	cache := t.TempDir()
	tests := []struct {
		name string
		opts Options
		is   error
		msg  string
	}{
		{"no kernel", Options{AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache}, nil, "no kernel"},
		{"no agent", Options{Kernel: k, CacheDir: cache}, nil, "no agent"},
		{"no cache", Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent)}, nil, "no cache"},
		{"no helper", Options{Kernel: k, AgentPath: agent, CacheDir: cache}, nil, "no process helper"},
		{"missing helper", Options{Kernel: k, AgentPath: agent, HelperPath: agent + ".helper", CacheDir: cache}, os.ErrNotExist, "agent.helper"},
		{"missing agent", Options{Kernel: k, AgentPath: agent + ".nope", HelperPath: helperOf(agent), CacheDir: cache}, os.ErrNotExist, "agent.nope"},
		{"unknown group", Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache, Groups: []string{"usb"}}, ErrUnknownGroup, `"usb"`},
		{"missing modules", Options{Kernel: &Kernel{ModulesDir: filepath.Join(cache, "none")}, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache}, os.ErrNotExist, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(tt.opts)
			if err == nil {
				t.Fatalf("built %s", p)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
	// A module missing from the tree names the module and its dependent.
	os.Remove(filepath.Join(k.ModulesDir, "kernel", "lib", "raid6", "raid6_pq.ko"))
	_, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache, Groups: []string{"btrfs"}})
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), `"raid6_pq" needed by "btrfs"`) {
		t.Errorf("missing dependency: %v", err)
	}
	// Only the alias table (a valid cache entry) may be there.
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "modaliases-") {
			t.Errorf("failed builds left %s in the cache", e.Name())
		}
	}
}

func TestBuildRealKernel(t *testing.T) {
	k := realKernel(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agentData, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	start := time.Now()
	p, err := Build(Options{Kernel: k, AgentPath: exe, HelperPath: exe, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	start = time.Now()
	if p2, err := Build(Options{Kernel: k, AgentPath: exe, HelperPath: exe, CacheDir: cache}); err != nil || p2 != p {
		t.Fatalf("cached: %q, %v", p2, err)
	}
	cached := time.Since(start)
	recs := checkLayout(t, p, agentData)
	fi, _ := os.Stat(p)
	t.Logf("initrd %d bytes (agent %d, modules %d), cold build %v, cached %v",
		fi.Size(), len(agentData), fi.Size()-int64(len(agentData)), cold, cached)
	t.Logf("load.order:\n%s", recs["lib/modules/load.order"].data)
	unsigned := !k.ModulesMustBeSigned()
	for name, r := range recs {
		if strings.HasSuffix(name, ".ko") && bytes.HasSuffix(r.data, []byte(moduleSigMagic)) == unsigned {
			t.Errorf("%s: its signature kept: %v, want %v (ModulesMustBeSigned)", name, unsigned, !unsigned)
		}
	}
}

// TestBuildStripsSignatures: a signed module goes into the initrd without
// its signature unless the kernel's config forces signatures, or is not
// there to say.
func TestBuildStripsSignatures(t *testing.T) {
	tests := []struct {
		name   string
		config string // "": none
		signed bool
	}{
		{"not forced", "CONFIG_MODULE_SIG=y\n# CONFIG_MODULE_SIG_FORCE is not set\n", false},
		{"forced", "CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_FORCE=y\n", true},
		{"no config", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := fakeKernel(t)
			ko := filepath.Join(k.ModulesDir, "kernel/drivers/virtio/virtio_ring.ko")
			body, err := os.ReadFile(ko)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ko, signed(body, 470, [moduleSigInfoLen]byte{2: 2}), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.config != "" {
				if err := os.WriteFile(filepath.Join(filepath.Dir(k.Vmlinuz), "config-"+k.Release), []byte(tt.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			agentData := []byte("\x7fELF pretend agent")
			agent := writeAgent(t, agentData)
			p, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: t.TempDir(), Groups: []string{"mmio"}})
			if err != nil {
				t.Fatal(err)
			}
			got := checkLayout(t, p, agentData)["lib/modules/virtio_ring.ko"].data
			want := body
			if tt.signed {
				want = signed(body, 470, [moduleSigInfoLen]byte{2: 2})
			}
			if !bytes.Equal(got, want) {
				t.Errorf("virtio_ring.ko in the initrd: %d bytes, want %d (signed %v)", len(got), len(want), tt.signed)
			}
		})
	}
}

// BenchmarkBuild builds the initrd of the real kernel with this test binary
// as the agent: cold (new cache directory each time) and cached.
func BenchmarkBuild(b *testing.B) {
	k := realKernel(b)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			cache := b.TempDir()
			b.StartTimer()
			if _, err := Build(Options{Kernel: k, AgentPath: exe, HelperPath: exe, CacheDir: cache}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache := b.TempDir()
		if _, err := Build(Options{Kernel: k, AgentPath: exe, HelperPath: exe, CacheDir: cache}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := Build(Options{Kernel: k, AgentPath: exe, HelperPath: exe, CacheDir: cache}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBuildStatStamp: a second Build of the same files finds the initrd by
// their stat alone, without reading them (here the module files are gone);
// a rebuilt agent or a replaced modules.order (a kernel package upgrade)
// misses and reads everything again.
func TestBuildStatStamp(t *testing.T) {
	k := fakeKernel(t)
	order := filepath.Join(k.ModulesDir, "modules.order")
	if err := os.WriteFile(order, []byte("kernel/fs/btrfs/btrfs.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := writeAgent(t, []byte("\x7fELF pretend agent"))
	cache := t.TempDir()
	p1, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	// The module files go (kernel/ itself, in the stamp, keeps its stat:
	// they are in its subdirectories): only the stamp can find the initrd
	// now.
	var moved []string
	_ = filepath.WalkDir(filepath.Join(k.ModulesDir, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			moved = append(moved, p)
		}
		return nil
	})
	aside := t.TempDir()
	for i, p := range moved {
		if err := os.Rename(p, filepath.Join(aside, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache}); err != nil || p != p1 {
		t.Fatalf("same stat: %q, %v; want %q found by its stamp", p, err, p1)
	}
	// modules.order replaced, as a package upgrade does: the stamp misses,
	// and the full path reads the (missing) modules.
	if err := os.Remove(order); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(order, []byte("kernel/fs/btrfs/btrfs.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache}); err == nil {
		t.Fatal("a replaced modules.order still found the old initrd by its stamp")
	}
	for i, p := range moved {
		if err := os.Rename(filepath.Join(aside, fmt.Sprint(i)), p); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache}); err != nil || p != p1 {
		t.Fatalf("after the upgrade: %q, %v; want the same contents' %q", p, err, p1)
	}
	// A rebuilt agent (a new file) misses too.
	agent2 := filepath.Join(filepath.Dir(agent), "agent.new")
	if err := os.WriteFile(agent2, []byte("\x7fELF another agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(agent2, agent); err != nil {
		t.Fatal(err)
	}
	p2, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache})
	if err != nil || p2 == p1 {
		t.Fatalf("new agent: %q, %v; want another initrd", p2, err)
	}
	// So does a rebuilt process helper.
	helper2 := filepath.Join(filepath.Dir(agent), "helper.new")
	if err := os.WriteFile(helper2, []byte("\x7fELF another helper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(helper2, helperOf(agent)); err != nil {
		t.Fatal(err)
	}
	if p, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache}); err != nil || p == p2 || p == p1 {
		t.Fatalf("new helper: %q, %v; want another initrd", p, err)
	}
}
