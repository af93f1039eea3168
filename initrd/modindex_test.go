package initrd

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFnmatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, name string
		want          bool
	}{
		{"rtnl_link_bridge", "rtnl_link_bridge", true},
		{"rtnl_link_bridge", "rtnl_link_bridg", false},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001041sv00001AF4sd00001100bc01sc00i00", true},
		{"pci:v00001AF4d*", "pci:v00001AF5d00001041", false},
		{"char_major_10_*", "char_major_10_229", true},
		{"char_major_10_*", "char_major_11_229", false},
		{"*", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"fs_?fs", "fs_xfs", true},
		{"fs_?fs", "fs_fs", false},
		{"d0[4_5]*", "d05x", true},
		{"d0[4_5]*", "d0_", true},
		{"d0[4_5]*", "d06", false},
		{"d059[2-9]", "d0595", true},
		{"d059[2-9]", "d0591", false},
		{"[!a]x", "bx", true},
		{"[!a]x", "ax", false},
		{"[^a]x", "ax", false},
		{"[]]x", "]x", true},
		{"[a-]x", "-x", true},
		{"[ab", "[ab", true}, // no ']': a literal '['
		{"[ab", "a", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"*/x", "a/b/x", true}, // no FNM_PATHNAME: '*' takes '/'
		{"dmi:*:[bs]vnD[Ee][Ll][Ll]*:*", "dmi:bvnDell:svnDELLInc.:pn", true},
	} {
		if got := fnmatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestAliasNormalize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"rtnl-link-bridge", "rtnl_link_bridge"},
		{"usb:v0421p047Cd0[4-5]*dc*", "usb:v0421p047Cd0[4-5]*dc*"},
		{"a-[x-y]-b", "a_[x-y]_b"},
		{"net_pf_10", "net_pf_10"},
	} {
		if got, err := aliasNormalize(tt.in); err != nil || got != tt.want {
			t.Errorf("aliasNormalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"a]b", "a[b"} {
		if _, err := aliasNormalize(bad); err == nil {
			t.Errorf("aliasNormalize(%q): no error", bad)
		}
	}
}

// bridgeLikeMods is a tree with the shape of the modules a container asks
// for: bridge needs stp and llc, overlay is a filesystem, two modules share
// crypto-crc32c, and tun answers a char-major wildcard.
func bridgeLikeMods() []fakeMod {
	m := func(path, name, depends string, extra ...string) fakeMod {
		return fakeMod{path, append([]string{"name=" + name, "depends=" + depends}, extra...)}
	}
	return []fakeMod{
		m("net/802/llc.ko", "llc", ""),
		m("net/802/stp.ko", "stp", "llc"),
		m("net/bridge/bridge.ko", "bridge", "stp,llc", "alias=rtnl-link-bridge"),
		m("net/bridge/br_netfilter.ko", "br_netfilter", "bridge", "softdep=pre: nf-helper post: br-post"),
		m("net/netfilter/nf_helper.ko", "nf_helper", "", "alias=nf-helper"),
		m("net/netfilter/br_post.ko", "br_post", "br_netfilter", "alias=br-post"),
		m("fs/overlayfs/overlay.ko.xz", "overlay", "", "alias=fs-overlay"),
		m("crypto/crc32c_generic.ko", "crc32c_generic", "", "alias=crypto-crc32c"),
		m("arch/x86/crypto/crc32c-intel.ko", "crc32c_intel", "", "alias=crypto-crc32c"),
		m("drivers/net/tun.ko", "tun", "", "alias=char-major-10-200", "alias=devname:net/tun"),
		m("drivers/misc/wild.ko", "wild", "", "alias=char-major-99-*", "alias=usb:v0421p047Cd0[4-5]*"),
		m("drivers/misc/needs_builtin.ko", "needs_builtin", "crc32"),
	}
}

// modIndexOf builds the module index of the tree dir and reads it back, as
// the guest does.
func modIndexOf(t *testing.T, dir string) *ModIndex {
	t.Helper()
	ix, err := NewIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := buildModIndex(ix)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ib.encodeGzip()
	if err != nil {
		t.Fatal(err)
	}
	mi, err := ReadModIndex(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return mi
}

func bridgeLikeIndex(t *testing.T) *ModIndex {
	t.Helper()
	dir := fakeModulesDir(t, t.TempDir(), "1.0", bridgeLikeMods(), []string{"kernel/lib/crc32.ko", "kernel/net/ipv6/ipv6.ko"})
	writeBuiltinModinfo(t, dir, "ipv6.alias=net-pf-10\x00ipv6.license=GPL\x00")
	return modIndexOf(t, dir)
}

func TestModIndexRequest(t *testing.T) {
	mi := bridgeLikeIndex(t)
	paths := func(mods []Module) []string {
		var p []string
		for _, m := range mods {
			p = append(p, m.Path)
		}
		return p
	}
	for _, tt := range []struct {
		name  string
		want  []string // module names in load order; nil: built in
		paths []string // when set, the files of want
	}{
		{name: "bridge", want: []string{"llc", "stp", "bridge"},
			paths: []string{"kernel/net/802/llc.ko", "kernel/net/802/stp.ko", "kernel/net/bridge/bridge.ko"}},
		{name: "rtnl-link-bridge", want: []string{"llc", "stp", "bridge"}},
		{name: "rtnl_link_bridge", want: []string{"llc", "stp", "bridge"}},
		{name: "fs-overlay", want: []string{"overlay"}, paths: []string{"kernel/fs/overlayfs/overlay.ko.xz"}},
		{name: "crc32c-intel", want: []string{"crc32c_intel"}},
		// modprobe loads every module with the alias.
		{name: "crypto-crc32c", want: []string{"crc32c_generic", "crc32c_intel"}},
		{name: "char-major-10-200", want: []string{"tun"}},
		{name: "devname:net/tun", want: nil, paths: nil}, // '/' is refused (below)
		{name: "char-major-99-3", want: []string{"wild"}},
		{name: "usb:v0421p047Cd05x", want: []string{"wild"}},
		// softdep pre: before, post: after; a post softdep may depend on
		// the module.
		{name: "br_netfilter", want: []string{"nf_helper", "llc", "stp", "bridge", "br_netfilter", "br_post"}},
		{name: "needs-builtin", want: []string{"needs_builtin"}},
		{name: "net-pf-10", want: nil},
		{name: "ipv6", want: nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mi.Request(tt.name)
			if strings.Contains(tt.name, "/") {
				if !errors.Is(err, ErrBadModuleName) {
					t.Errorf("got %v, %v; want ErrBadModuleName", names(got), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("got %v, want %v", names(got), tt.want)
			}
			if tt.paths != nil && !slices.Equal(paths(got), tt.paths) {
				t.Errorf("paths %v, want %v", paths(got), tt.paths)
			}
		})
	}
	for _, bad := range []string{"", "../../etc/passwd", "a/b", "..", "x..y", "a b", "a\x00b", "a\nb", strings.Repeat("a", 256)} {
		if got, err := mi.Request(bad); !errors.Is(err, ErrBadModuleName) {
			t.Errorf("Request(%q) = %v, %v; want ErrBadModuleName", bad, names(got), err)
		}
	}
	for _, absent := range []string{"wireguard", "fs-nosuchfs", "char-major-98-1", "usb:v0421p047Cd06x"} {
		if got, err := mi.Request(absent); !errors.Is(err, ErrModuleNotFound) {
			t.Errorf("Request(%q) = %v, %v; want ErrModuleNotFound", absent, names(got), err)
		}
	}
}

func TestModIndexDependencyCycle(t *testing.T) {
	dir := fakeModulesDir(t, t.TempDir(), "1.0", []fakeMod{
		{"a.ko", []string{"name=a", "depends=b"}},
		{"b.ko", []string{"name=b", "depends=a"}},
		{"c.ko", []string{"name=c", "depends=gone"}},
	}, nil)
	mi := modIndexOf(t, dir)
	if _, err := mi.Request("a"); !errors.Is(err, ErrDependencyCycle) {
		t.Errorf("cycle: %v", err)
	}
	if _, err := mi.Request("c"); !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), `"gone"`) {
		t.Errorf("missing dependency: %v", err)
	}
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

func TestReadModIndex(t *testing.T) {
	good := modIndexVersion + "\na rtnl_link_bridge bridge\nb ipv6\nm bridge kernel/net/bridge/bridge.ko stp,llc - -\n"
	mi, err := ReadModIndex(bytes.NewReader(gzipped(t, good)))
	if err != nil {
		t.Fatal(err)
	}
	if p := mi.file("bridge"); p != "kernel/net/bridge/bridge.ko" {
		t.Errorf("bridge: %q", p)
	}
	// Sections may be missing, and a last line may lack its newline.
	for _, in := range []string{
		modIndexVersion + "\na x_y mod\nm mod kernel/mod.ko - - -",
		modIndexVersion + "\na x_y mod\nb other\nm mod kernel/mod.ko - - -\n",
		modIndexVersion + "\nm mod kernel/mod.ko - - -\n",
	} {
		mi, err := ReadModIndex(bytes.NewReader(gzipped(t, in)))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got, err := mi.Request("mod"); err != nil || !slices.Equal(names(got), []string{"mod"}) {
			t.Errorf("%q: mod: %v, %v", in, names(got), err)
		}
		got, err := mi.Request("x-y")
		if strings.Contains(in, "a x_y") != (err == nil && slices.Equal(names(got), []string{"mod"})) {
			t.Errorf("%q: x-y: %v, %v", in, names(got), err)
		}
	}
	for name, in := range map[string]string{
		"other version":    "initos-modindex v0\n",
		"empty":            "",
		"unknown record":   modIndexVersion + "\nx y\n",
		"short module":     modIndexVersion + "\nm bridge kernel/bridge.ko\n",
		"absolute path":    modIndexVersion + "\nm bridge /lib/bridge.ko - - -\n",
		"escaping path":    modIndexVersion + "\nm bridge kernel/../../bridge.ko - - -\n",
		"parent path":      modIndexVersion + "\nm bridge ../bridge.ko - - -\n",
		"unclean path":     modIndexVersion + "\nm bridge kernel//bridge.ko - - -\n",
		"other file":       modIndexVersion + "\nm bridge kernel/net/stp.ko - - -\n",
		"not a module":     modIndexVersion + "\nm bridge kernel/bridge.txt - - -\n",
		"name with slash":  modIndexVersion + "\nm a/bridge kernel/a/bridge.ko - - -\n",
		"name with dotdot": modIndexVersion + "\nm ..bridge kernel/..bridge.ko - - -\n",
		"empty field":      modIndexVersion + "\na  bridge\n",
		"too many fields":  modIndexVersion + "\nm bridge kernel/bridge.ko - - - -\n",
		"unsorted":         modIndexVersion + "\nb ipv6\na rtnl_link_bridge bridge\n",
	} {
		if _, err := ReadModIndex(bytes.NewReader(gzipped(t, in))); !errors.Is(err, ErrBadModIndex) {
			t.Errorf("%s: got %v, want ErrBadModIndex", name, err)
		}
	}
	if _, err := ReadModIndex(strings.NewReader(good)); !errors.Is(err, ErrBadModIndex) {
		t.Errorf("not gzip'd: got %v", err)
	}
}

func TestCachedModIndex(t *testing.T) {
	dir := fakeModulesDir(t, t.TempDir(), "1.0", bridgeLikeMods(), nil)
	cache := t.TempDir()
	ix, err := NewIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, file, err := cachedModIndex(ix, cache)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cache, modIndexPrefix+"*.gz"))
	if len(files) != 1 || files[0] != file {
		t.Fatalf("cache holds %v; cachedModIndex named %q", files, file)
	}
	// A hit is found by the stamp and read, not rebuilt: mark it.
	marked := gzipped(t, modIndexVersion+"\nb marked\n")
	if err := os.WriteFile(files[0], marked, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _, err := cachedModIndex(ix, cache); err != nil || !bytes.Equal(b, marked) {
		t.Fatalf("cache hit: %d bytes, %v; want the marked file", len(b), err)
	}
	// A new package (modules.builtin rewritten) changes the stamp.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/lib/crc32.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b2, _, err := cachedModIndex(ix, cache)
	if err != nil {
		t.Fatal(err)
	}
	if mi, err := ReadModIndex(bytes.NewReader(b2)); err != nil || mi.isBuiltin("marked") || mi.file("bridge") == "" {
		t.Errorf("after the tree changed: %v; want a rebuilt index", err)
	}
	if files, _ = filepath.Glob(filepath.Join(cache, modIndexPrefix+"*.gz")); len(files) != 2 {
		t.Errorf("cache holds %v, want two stamps", files)
	}
}

func TestModIndexRealKernel(t *testing.T) {
	k := realKernel(t)
	ix, err := NewIndex(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ib, err := buildModIndex(ix)
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	b, err := ib.encodeGzip()
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	ib.encode(&raw)
	start = time.Now()
	back, err := ReadModIndex(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("index of %d modules, %d aliases: built in %v, %d bytes (%d gzip'd), read back in %v",
		len(ib.modules), len(ib.aliases), built, raw.Len(), len(b), time.Since(start))
	for name, want := range map[string][]string{
		"rtnl-link-bridge":    {"llc", "stp", "bridge"},
		"bridge":              {"llc", "stp", "bridge"},
		"fs-overlay":          {"overlay"},
		"rtnl-link-wireguard": nil, // checked below: ends with wireguard
		"ip_tables":           {"x_tables", "ip_tables"},
	} {
		start := time.Now()
		got, err := back.Request(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		t.Logf("%s: %v (%v)", name, names(got), time.Since(start))
		if want != nil && !slices.Equal(names(got), want) {
			t.Errorf("%s: got %v, want %v", name, names(got), want)
		}
		if want == nil && (len(got) == 0 || got[len(got)-1].Name != "wireguard") {
			t.Errorf("%s: got %v, want wireguard last", name, names(got))
		}
	}
	if _, err := back.Request("no-such-module"); !errors.Is(err, ErrModuleNotFound) {
		t.Errorf("no-such-module: %v", err)
	}
}
