package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func names(mods []Module) []string {
	var n []string
	for _, m := range mods {
		n = append(n, m.Name)
	}
	return n
}

func TestParseModInfo(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
		want ModInfo
	}{
		{"plain", []string{"name=virtio-blk", "depends=virtio,virtio_ring", "alias=virtio:d00000002v*"},
			ModInfo{Name: "virtio_blk", Depends: []string{"virtio", "virtio_ring"}, Aliases: []string{"virtio:d00000002v*"}}},
		{"empty depends", []string{"name=fuse", "depends="}, ModInfo{Name: "fuse"}},
		{"dash in depends", []string{"name=x", "depends=crc32c-intel"}, ModInfo{Name: "x", Depends: []string{"crc32c_intel"}}},
		{"softdep pre and post", []string{"name=x", "softdep=pre: a b post: c"},
			ModInfo{Name: "x", SoftPre: []string{"a", "b"}, SoftPost: []string{"c"}}},
		{"softdep repeated", []string{"name=btrfs", "softdep=pre: blake2b-256", "softdep=pre: crypto-crc32c"},
			ModInfo{Name: "btrfs", SoftPre: []string{"blake2b-256", "crypto-crc32c"}}},
		{"softdep without section", []string{"name=x", "softdep=a pre: b"}, ModInfo{Name: "x", SoftPre: []string{"b"}}},
		{"junk ignored", []string{"name=x", "garbage", "", "description=a=b"}, ModInfo{Name: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "m.ko")
			if err := os.WriteFile(p, fakeELF(tt.kv...), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadModInfo(p)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tt.want.Name || !slices.Equal(got.Depends, tt.want.Depends) ||
				!slices.Equal(got.SoftPre, tt.want.SoftPre) || !slices.Equal(got.SoftPost, tt.want.SoftPost) ||
				!slices.Equal(got.Aliases, tt.want.Aliases) {
				t.Errorf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestReadModInfoErrors(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "a.ko")
	os.WriteFile(notELF, []byte("hello"), 0o644)
	if _, err := ReadModInfo(notELF); err == nil || !strings.Contains(err.Error(), notELF) {
		t.Errorf("not an ELF file: got %v, want an error naming %s", err, notELF)
	}
	if _, err := ReadModInfo(filepath.Join(dir, "missing.ko")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
}

// checkOrder fails unless every module comes after its dependencies and
// softdep pre: modules, and before its softdep post: modules.
func checkOrder(t *testing.T, mods []Module) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range mods {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	for i, m := range mods {
		for _, d := range append(slices.Clone(m.Depends), m.SoftPre...) {
			if j, ok := pos[d]; !ok || j > i {
				t.Errorf("%s (at %d) needs %s first (at %d, present %v)", m.Name, i, d, j, ok)
			}
		}
		for _, d := range m.SoftPost {
			if j, ok := pos[d]; !ok || j < i {
				t.Errorf("%s (at %d) wants %s after it (at %d, present %v)", m.Name, i, d, j, ok)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	k := fakeKernel(t)
	ix, err := NewIndex(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		wanted []string
		want   []string
	}{
		{[]string{"virtio_mmio"}, []string{"virtio_ring", "virtio", "virtio_mmio"}},
		{[]string{"virtio-mmio"}, []string{"virtio_ring", "virtio", "virtio_mmio"}},
		{[]string{"virtio_pci"}, []string{"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_pci"}},
		// crypto-crc32c has two providers: the generic one is taken;
		// xxhash_generic is a .ko.xz; sha256 is absent (softdep: skipped).
		{[]string{"btrfs"}, []string{"blake2b_generic", "xxhash_generic", "crc32c_generic", "zstd_compress", "raid6_pq", "xor", "libcrc32c", "btrfs"}},
		{[]string{"9p", "9pnet_virtio"}, []string{"9pnet", "netfs", "fscache", "9p", "virtio_ring", "virtio", "9pnet_virtio"}},
		{[]string{"crc32c"}, []string{"crc32c_generic"}}, // by alias
		{[]string{"crc32"}, nil},                         // built in
		{nil, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.wanted, "+"), func(t *testing.T) {
			got, err := Resolve(ix, tt.wanted)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("got %v, want %v", names(got), tt.want)
			}
			checkOrder(t, got)
		})
	}
}

func TestResolveErrors(t *testing.T) {
	root := t.TempDir()
	dir := fakeModulesDir(t, root, "1.0", []fakeMod{
		{"a.ko", []string{"name=a", "depends=b"}},
		{"b.ko", []string{"name=b", "depends=c"}},
		{"c.ko", []string{"name=c", "depends=a"}},
		{"d.ko", []string{"name=d", "depends=ghost"}},
		{"e.ko", []string{"name=e", "softdep=pre: f"}},
		{"f.ko", []string{"name=f", "depends=e"}},
		{"g.ko", []string{"name=g", "depends=", "softdep=post: h"}},
		{"h.ko", []string{"name=h", "depends=g"}},
		{"i.ko", []string{"name=i", "softdep=pre: nothing-provides-this"}},
	}, nil)
	ix, err := NewIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		wanted  []string
		is      error
		mention []string
	}{
		{[]string{"a"}, ErrDependencyCycle, []string{"a -> b -> c -> a"}},
		{[]string{"d"}, ErrModuleNotFound, []string{`"ghost"`, `"d"`, dir}},
		{[]string{"nope"}, ErrModuleNotFound, []string{`"nope"`, "wanted"}},
		{[]string{"e"}, ErrDependencyCycle, []string{"e -> f -> e"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.wanted, "+"), func(t *testing.T) {
			_, err := Resolve(ix, tt.wanted)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	// A post softdep that depends on its module is no cycle: it follows.
	got, err := Resolve(ix, []string{"g"})
	if err != nil || !slices.Equal(names(got), []string{"g", "h"}) {
		t.Errorf("post softdep: got %v, %v; want [g h]", names(got), err)
	}
	// A softdep nothing provides is skipped.
	got, err = Resolve(ix, []string{"i"})
	if err != nil || !slices.Equal(names(got), []string{"i"}) {
		t.Errorf("absent softdep: got %v, %v; want [i]", names(got), err)
	}
}

func TestIndexBuiltinAndAliases(t *testing.T) {
	root := t.TempDir()
	dir := fakeModulesDir(t, root, "1.0", []fakeMod{
		{"x.ko", []string{"name=x", "softdep=pre: sha256 fs-foo"}},
		{"foo.ko", []string{"name=foo", "alias=fs-foo"}},
		{"sha256_mod.ko", []string{"name=sha256_mod", "alias=sha256"}},
		{"y.ko", []string{"name=y", "depends=builtin_dep"}},
		{"v.ko", []string{"name=v", "alias=virtio:d00000009v*"}},
	}, []string{"kernel/lib/builtin-dep.ko"})
	// sha256 is also provided by a built-in module: that wins, nothing
	// to load.
	writeBuiltinModinfo(t, dir, "sha256_generic.alias=crypto-sha256\x00sha256_generic.alias=sha256\x00sha256_generic.license=GPL\x00")
	ix, err := NewIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		wanted string
		want   []string
	}{
		{"x", []string{"foo", "x"}},
		{"y", []string{"y"}},
		{"virtio:d00000009v00001AF4", []string{"v"}},
		{"sha256_generic", nil},
	} {
		got, err := Resolve(ix, []string{tt.wanted})
		if err != nil {
			t.Fatalf("%s: %v", tt.wanted, err)
		}
		if !slices.Equal(names(got), tt.want) {
			t.Errorf("%s: got %v, want %v", tt.wanted, names(got), tt.want)
		}
	}
}

func TestIndexModulesAlias(t *testing.T) {
	root := t.TempDir()
	dir := fakeModulesDir(t, root, "1.0", []fakeMod{
		{"x.ko", []string{"name=x", "softdep=pre: by-file"}},
		{"foo.ko", []string{"name=foo", "alias=by-modinfo-only"}},
	}, nil)
	// With modules.alias present it is trusted instead of the .modinfo.
	if err := os.WriteFile(filepath.Join(dir, "modules.alias"), []byte("# aliases\nalias by-file foo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := NewIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(ix, []string{"x"})
	if err != nil || !slices.Equal(names(got), []string{"foo", "x"}) {
		t.Errorf("got %v, %v; want [foo x]", names(got), err)
	}
}

func TestNewIndexErrors(t *testing.T) {
	if _, err := NewIndex(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: got %v", err)
	}
	root := t.TempDir()
	dir := fakeModulesDir(t, root, "1.0", []fakeMod{
		{"a/dup.ko", []string{"name=dup"}},
		{"b/dup.ko", []string{"name=dup"}},
	}, nil)
	if _, err := NewIndex(dir); err == nil || !strings.Contains(err.Error(), `"dup"`) {
		t.Errorf("duplicate module: got %v", err)
	}
}

func TestResolveGroups(t *testing.T) {
	ix, err := NewIndex(fakeKernel(t).ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ResolveGroups(ix, []string{"blk", "mmio"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"virtio_ring": {"mmio", "blk"},
		"virtio":      {"mmio", "blk"},
		"virtio_mmio": {"mmio"},
		"virtio_blk":  {"blk"},
	}
	if !slices.Equal(names(mods), []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk"}) {
		t.Errorf("order %v", names(mods))
	}
	for _, m := range mods {
		if !slices.Equal(m.Groups, want[m.Name]) {
			t.Errorf("%s: groups %v, want %v", m.Name, m.Groups, want[m.Name])
		}
	}
	if _, err := ResolveGroups(ix, []string{"blk", "floppy"}); !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), "floppy") {
		t.Errorf("unknown group: got %v", err)
	}
	all, err := ResolveGroups(ix, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, all)
	checkGroups(t, ix, all)
}

// checkGroups checks that loading the modules of any one group, in list
// order, loads each module after everything it needs.
func checkGroups(t *testing.T, ix *Index, mods []Module) {
	t.Helper()
	for _, g := range GroupNames() {
		var sub []Module
		for _, m := range mods {
			if slices.Contains(m.Groups, g) {
				sub = append(sub, m)
			}
		}
		roots, _ := GroupModules(g)
		for _, r := range roots {
			if !slices.ContainsFunc(sub, func(m Module) bool { return m.Name == r }) {
				t.Errorf("group %s lacks its module %s", g, r)
			}
		}
		closure, err := Resolve(ix, roots)
		if err != nil {
			t.Fatal(err)
		}
		if len(closure) != len(sub) {
			t.Errorf("group %s: %v, want the closure %v", g, names(sub), names(closure))
		}
		checkOrder(t, sub)
	}
}

// designOrder is the load order design.md section 8 found to work on
// Debian's 6.1 kernel, per group.
var designOrder = map[string][]string{
	"mmio":     {"virtio_ring", "virtio", "virtio_mmio"},
	"pci":      {"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"},
	"blk":      {"virtio_ring", "virtio", "virtio_blk"},
	"btrfs":    {"crc32c_generic", "libcrc32c", "zstd_compress", "raid6_pq", "xor", "blake2b_generic", "btrfs"},
	"console":  {"virtio_ring", "virtio", "virtio_console"},
	"net":      {"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"},
	"virtiofs": {"virtio_ring", "virtio", "fuse", "virtiofs"},
	"9p":       {"virtio_ring", "virtio", "netfs", "fscache", "9pnet", "9p", "9pnet_virtio"},
	"vsock":    {"virtio_ring", "virtio", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
}

func TestResolveRealKernel(t *testing.T) {
	k := realKernel(t)
	start := time.Now()
	ix, err := NewIndex(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("index of %s: %v", k.ModulesDir, time.Since(start))
	start = time.Now()
	mods, err := ResolveGroups(ix, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resolve all groups: %v", time.Since(start))
	checkOrder(t, mods)
	checkGroups(t, ix, mods)
	for _, m := range mods {
		t.Logf("%s.ko %s", m.Name, strings.Join(m.Groups, ","))
	}
	for g, want := range designOrder {
		for _, w := range want {
			i := slices.IndexFunc(mods, func(m Module) bool { return m.Name == w })
			if i < 0 {
				t.Errorf("group %s: %s missing", g, w)
				continue
			}
			if !slices.Contains(mods[i].Groups, g) {
				t.Errorf("%s: groups %v lack %s", w, mods[i].Groups, g)
			}
		}
	}
	// btrfs' softdep on crypto-crc32c is an alias that crc32c_generic and
	// crc32c_intel provide; the generic one is taken.
	if slices.Contains(names(mods), "crc32c_intel") {
		t.Errorf("crc32c_intel taken: %v", names(mods))
	}
}

func TestReadModuleCompressed(t *testing.T) {
	raw := fakeELF("name=m", "depends=a,b", "softdep=pre: c")
	tests := []struct {
		suffix   string
		compress func(t *testing.T) []byte
	}{
		{".ko", func(t *testing.T) []byte { return raw }},
		{".ko.xz", func(t *testing.T) []byte { return compressXZ(t, raw) }},
		{".ko.xz", func(t *testing.T) []byte {
			return compressCmd(t, raw, "xz", "-c", "--check=crc32", "--lzma2=dict=1MiB") // as kmod does
		}},
		{".ko.gz", func(t *testing.T) []byte { return compressGzip(t, raw) }},
		{".ko.zst", func(t *testing.T) []byte { return compressCmd(t, raw, "zstd", "-q", "-c") }},
		{".ko.zst", func(t *testing.T) []byte { return compressZstd(t, raw) }},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i, tt.suffix), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "m"+tt.suffix)
			if err := os.WriteFile(p, tt.compress(t), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadModule(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, raw) {
				t.Errorf("read %d bytes, want %d", len(got), len(raw))
			}
			mi, err := ReadModInfo(p)
			if err != nil {
				t.Fatal(err)
			}
			if mi.Name != "m" || !slices.Equal(mi.Depends, []string{"a", "b"}) || !slices.Equal(mi.SoftPre, []string{"c"}) {
				t.Errorf("modinfo %+v", *mi)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "bad.ko.xz")
	os.WriteFile(p, []byte("not xz at all"), 0o644)
	if _, err := ReadModule(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("corrupt .ko.xz: got %v, want an error naming it", err)
	}
}
