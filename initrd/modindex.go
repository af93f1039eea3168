package initrd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// ModIndexName is the module index's file name in the initrd, under
// lib/modules (docs/contracts.md).
const ModIndexName = "modules.idx.gz"

// modIndexVersion is the index's first line; change it when the format
// changes (it is hashed into the cache's stamps too).
const modIndexVersion = "initos-modindex v1"

// maxModuleName bounds a requested name; the kernel's own are under 64
// bytes (MODULE_NAME_LEN), its request strings under 128.
const maxModuleName = 255

// ModIndex is the compact index of a kernel's whole module tree that the
// guest's modprobe resolves the kernel's requests with: each module file's
// name, path relative to the modules directory, dependencies and softdeps,
// the aliases of module files and of built-in modules, and the built-in
// module names. It is the tree's modules.dep, modules.alias and
// modules.builtin in one gzip'd text file:
//
//	initos-modindex v1
//	m NAME PATH DEPENDS SOFTPRE SOFTPOST   (lists comma-separated, "-" when empty)
//	a ALIAS NAME                           (ALIAS normalised as kmod does)
//	b NAME                                 (built in)
type ModIndex struct {
	modules map[string]*indexedModule // normalised name → module file
	exact   map[string][]string       // normalised alias → module names
	globs   []aliasGlob               // aliases with wildcards, in file order
	builtin map[string]bool
}

type indexedModule struct {
	path string // relative to the modules directory, '/'-separated
	info ModInfo
}

func newModIndex() *ModIndex {
	return &ModIndex{modules: map[string]*indexedModule{}, exact: map[string][]string{}, builtin: map[string]bool{}}
}

// buildModIndex indexes every module file of ix, reading each one's
// .modinfo (in parallel), and its built-in modules.
func buildModIndex(ix *Index) (*ModIndex, error) {
	ix.mu.Lock()
	err := ix.readAllInfos()
	ix.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("indexing modules: %w", err)
	}
	mi := newModIndex()
	for name, p := range ix.files {
		rel, err := filepath.Rel(ix.dir, p)
		if err != nil {
			return nil, fmt.Errorf("indexing module %q: %w", p, err)
		}
		info := ix.infos[name]
		mi.modules[name] = &indexedModule{path: filepath.ToSlash(rel), info: ModInfo{
			Name: name, Depends: info.Depends, SoftPre: info.SoftPre, SoftPost: info.SoftPost,
		}}
		for _, a := range info.Aliases {
			mi.addAlias(a, name)
		}
	}
	for n := range ix.builtin {
		mi.builtin[n] = true
	}
	for a, mods := range ix.builtinAliases {
		for _, m := range mods {
			mi.addAlias(a, m)
		}
	}
	return mi, nil
}

// addAlias adds one alias of module. Like depmod, it drops an alias kmod
// cannot normalise; one with blanks in it could never be asked for.
func (mi *ModIndex) addAlias(alias, module string) {
	a, err := aliasNormalize(alias)
	if err != nil || a == "" || strings.ContainsFunc(a, isBlankOrControl) {
		return
	}
	if strings.ContainsAny(a, "*?[\\") {
		mi.globs = append(mi.globs, aliasGlob{a, module})
		return
	}
	mi.exact[a] = appendUnique(mi.exact[a], module)
}

func isBlankOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// encode writes the index in its text form, sorted, so the same tree
// gives the same bytes.
func (mi *ModIndex) encode(w io.Writer) error {
	list := func(l []string) string {
		if len(l) == 0 {
			return "-"
		}
		return strings.Join(l, ",")
	}
	var lines []string
	for n, m := range mi.modules {
		lines = append(lines, fmt.Sprintf("m %s %s %s %s %s", n, m.path, list(m.info.Depends), list(m.info.SoftPre), list(m.info.SoftPost)))
	}
	for a, mods := range mi.exact {
		for _, m := range mods {
			lines = append(lines, "a "+a+" "+m)
		}
	}
	for _, g := range mi.globs {
		lines = append(lines, "a "+g.pattern+" "+g.module)
	}
	for n := range mi.builtin {
		lines = append(lines, "b "+n)
	}
	sort.Strings(lines)
	lines = slices.Compact(lines)
	_, err := io.WriteString(w, modIndexVersion+"\n"+strings.Join(lines, "\n")+"\n")
	return err
}

// encodeGzip is encode, gzip'd (deterministic: no name, no time).
func (mi *ModIndex) encodeGzip() ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := mi.encode(zw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadModIndex reads a gzip'd module index. Each module file must be a
// local path below the modules directory whose name is the module's, so
// that a name the kernel asks for can only ever lead to a module file of
// the tree.
func ReadModIndex(r io.Reader) (*ModIndex, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading module index: %w: %w", ErrBadModIndex, err)
	}
	defer zr.Close()
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != modIndexVersion {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading module index: %w", err)
		}
		return nil, fmt.Errorf("reading module index: %w: first line is not %q", ErrBadModIndex, modIndexVersion)
	}
	mi := newModIndex()
	for n := 2; sc.Scan(); n++ {
		if err := mi.parseLine(sc.Text()); err != nil {
			return nil, fmt.Errorf("reading module index line %d: %w: %w", n, ErrBadModIndex, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading module index: %w", err)
	}
	return mi, nil
}

// OpenModIndex reads the gzip'd module index at path.
func OpenModIndex(path string) (*ModIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening module index: %w", err)
	}
	defer f.Close()
	return ReadModIndex(f)
}

func (mi *ModIndex) parseLine(line string) error {
	f := strings.Fields(line)
	list := func(s string) []string {
		if s == "-" {
			return nil
		}
		return strings.Split(s, ",")
	}
	switch {
	case len(f) == 6 && f[0] == "m":
		name, p := f[1], f[2]
		if err := checkModuleName(name); err != nil {
			return err
		}
		if base, ok := moduleFileName(path.Base(p)); !ok || base != name || !filepath.IsLocal(p) || path.Clean(p) != p {
			return fmt.Errorf("module %q: %q is not a file of it below the modules directory", name, p)
		}
		mi.modules[name] = &indexedModule{path: p, info: ModInfo{Name: name, Depends: list(f[3]), SoftPre: list(f[4]), SoftPost: list(f[5])}}
	case len(f) == 3 && f[0] == "a":
		mi.addAlias(f[1], f[2])
	case len(f) == 2 && f[0] == "b":
		mi.builtin[f[1]] = true
	default:
		return fmt.Errorf("%q is not a module, alias or built-in line", line)
	}
	return nil
}

// checkModuleName rejects names that cannot be a module's or an alias and
// could name a file elsewhere.
func checkModuleName(name string) error {
	if name == "" || len(name) > maxModuleName || strings.Contains(name, "/") || strings.Contains(name, "..") || strings.ContainsFunc(name, isBlankOrControl) {
		return fmt.Errorf("module %q: %w", name, ErrBadModuleName)
	}
	return nil
}

// Request resolves a name the kernel asks modprobe for (request_module:
// "bridge", "rtnl-link-bridge", "net-pf-10", "fs-overlay", ...) as modprobe
// does: a module file by its name ('-' and '_' alike), else every module
// file with a matching alias (fnmatch over kmod's normalised aliases),
// else a built-in module. It returns the modules to load, each after its
// dependencies and softdep pre: modules; nil when the name is built in.
func (mi *ModIndex) Request(name string) ([]Module, error) {
	if err := checkModuleName(name); err != nil {
		return nil, err
	}
	n := normalizeName(name)
	if _, ok := mi.modules[n]; ok {
		return resolve(mi, []string{n})
	}
	var files []string
	builtin := mi.builtin[n]
	for _, m := range mi.aliasMatches(name) {
		if _, ok := mi.modules[m]; ok {
			files = append(files, m)
		} else if mi.builtin[m] {
			builtin = true
		}
	}
	if len(files) > 0 {
		sort.Strings(files)
		return resolve(mi, files)
	}
	if builtin {
		return nil, nil
	}
	return nil, fmt.Errorf("module %q: %w", name, ErrModuleNotFound)
}

// aliasMatches returns the modules (files or built in) with an alias that
// matches name.
func (mi *ModIndex) aliasMatches(name string) []string {
	a, err := aliasNormalize(name)
	if err != nil {
		return nil
	}
	out := slices.Clone(mi.exact[a])
	for _, g := range mi.globs {
		if fnmatch(g.pattern, a) {
			out = appendUnique(out, g.module)
		}
	}
	return out
}

// moduleSource for resolve.

func (mi *ModIndex) info(name string) (*ModInfo, error) {
	if m, ok := mi.modules[name]; ok {
		return &m.info, nil
	}
	return nil, fmt.Errorf("module %q: %w", name, ErrModuleNotFound)
}

func (mi *ModIndex) file(name string) string {
	if m, ok := mi.modules[name]; ok {
		return m.path
	}
	return ""
}

func (mi *ModIndex) where() string { return "the module index" }

func (mi *ModIndex) lookupName(name string) lookupResult {
	n := normalizeName(name)
	if _, ok := mi.modules[n]; ok {
		return lookupResult{module: n}
	}
	return lookupResult{builtin: mi.builtin[n]}
}

func (mi *ModIndex) lookup(name string) (lookupResult, error) {
	if r := mi.lookupName(name); r.module != "" || r.builtin {
		return r, nil
	}
	var files []string
	for _, m := range mi.aliasMatches(name) {
		if mi.builtin[m] {
			return lookupResult{builtin: true}, nil
		}
		if _, ok := mi.modules[m]; ok {
			files = append(files, m)
		}
	}
	if len(files) == 0 {
		return lookupResult{}, nil
	}
	return lookupResult{module: pickCandidate(files)}, nil
}

// modIndexPrefix names the cached indexes: modindex-<stamp>.gz.
const modIndexPrefix = "modindex-"

// cachedModIndex returns the gzip'd index of ix's tree from cacheDir, or
// builds it (reading every module's .modinfo: about 0.3-0.5 s for Debian's
// 4000 modules) and keeps it there under a stat stamp of the tree, so the
// next initrd of the same kernel (another agent) does not read them again.
// A cache that cannot be written only costs the next build the reads.
func cachedModIndex(ix *Index, cacheDir string) ([]byte, error) {
	h := sha256.New()
	hashField(h, []byte(modIndexVersion))
	cached := ""
	if err := hashStats(h, []string{ix.dir}, moduleTreeFiles(ix.dir)); err == nil {
		cached = filepath.Join(cacheDir, modIndexPrefix+hex.EncodeToString(h.Sum(nil))+".gz")
		if b, err := os.ReadFile(cached); err == nil {
			return b, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading cached module index: %w", err)
		}
	}
	mi, err := buildModIndex(ix)
	if err != nil {
		return nil, err
	}
	b, err := mi.encodeGzip()
	if err != nil {
		return nil, fmt.Errorf("encoding module index: %w", err)
	}
	if cached != "" && os.MkdirAll(cacheDir, 0o755) == nil {
		_ = writeFileAtomic(cached, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	}
	return b, nil
}
