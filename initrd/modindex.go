package initrd

import (
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
// modules.builtin in one gzip'd text file, sorted:
//
//	initos-modindex v1
//	a ALIAS NAME                           (ALIAS normalised as kmod does)
//	b NAME                                 (built in)
//	m NAME PATH DEPENDS SOFTPRE SOFTPOST   (lists comma-separated, "-" when empty)
//
// The guest reads it at every request, under TCG: ReadModIndex checks each
// line but builds no tables, and a request searches the text (a handful
// of module lines, one pass over the aliases). It is safe for concurrent
// use.
type ModIndex struct {
	// The lines after the version by kind, each with a '\n' before each
	// line and after the last.
	aliases, builtins, modules string
}

// indexBuilder collects an index on the host.
type indexBuilder struct {
	modules map[string]indexedModule // normalised name → module file
	aliases map[[2]string]bool       // normalised alias, module
	builtin map[string]bool
}

type indexedModule struct {
	path string // relative to the modules directory, '/'-separated
	info ModInfo
}

// buildModIndex indexes every module file of ix, reading each one's
// .modinfo (in parallel), and its built-in modules.
func buildModIndex(ix *Index) (*indexBuilder, error) {
	ix.mu.Lock()
	err := ix.readAllInfos()
	ix.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("indexing modules: %w", err)
	}
	b := &indexBuilder{modules: map[string]indexedModule{}, aliases: map[[2]string]bool{}, builtin: map[string]bool{}}
	for name, p := range ix.files {
		rel, err := filepath.Rel(ix.dir, p)
		if err != nil {
			return nil, fmt.Errorf("indexing module %q: %w", p, err)
		}
		info := ix.infos[name]
		b.modules[name] = indexedModule{path: filepath.ToSlash(rel), info: ModInfo{
			Name: name, Depends: info.Depends, SoftPre: info.SoftPre, SoftPost: info.SoftPost,
		}}
		for _, a := range info.Aliases {
			b.addAlias(a, name)
		}
	}
	for n := range ix.builtin {
		b.builtin[n] = true
	}
	for a, mods := range ix.builtinAliases {
		for _, m := range mods {
			b.addAlias(a, m)
		}
	}
	return b, nil
}

// addAlias adds one alias of module. Like depmod, it drops an alias kmod
// cannot normalise; one with blanks in it could never be asked for.
func (b *indexBuilder) addAlias(alias, module string) {
	a, err := aliasNormalize(alias)
	if err != nil || a == "" || strings.ContainsFunc(a, isBlankOrControl) {
		return
	}
	b.aliases[[2]string{a, module}] = true
}

func isBlankOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// encode writes the index in its text form, sorted, so the same tree
// gives the same bytes.
func (b *indexBuilder) encode(w io.Writer) error {
	list := func(l []string) string {
		if len(l) == 0 {
			return "-"
		}
		return strings.Join(l, ",")
	}
	var lines []string
	for n, m := range b.modules {
		lines = append(lines, fmt.Sprintf("m %s %s %s %s %s", n, m.path, list(m.info.Depends), list(m.info.SoftPre), list(m.info.SoftPost)))
	}
	for a := range b.aliases {
		lines = append(lines, "a "+a[0]+" "+a[1])
	}
	for n := range b.builtin {
		lines = append(lines, "b "+n)
	}
	sort.Strings(lines)
	_, err := io.WriteString(w, modIndexVersion+"\n"+strings.Join(lines, "\n")+"\n")
	return err
}

// encodeGzip is encode, gzip'd (deterministic: no name, no time).
func (b *indexBuilder) encodeGzip() ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := b.encode(zw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadModIndex reads a gzip'd module index and checks every line: each
// module file must be a local path below the modules directory whose name
// is the module's, so that a name the kernel asks for can only ever lead
// to a module file of the tree.
func ReadModIndex(r io.Reader) (*ModIndex, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("reading module index: %w: %w", ErrBadModIndex, err)
	}
	defer zr.Close()
	b, err := io.ReadAll(io.LimitReader(zr, maxModIndex+1))
	if err != nil {
		return nil, fmt.Errorf("reading module index: %w", err)
	}
	if len(b) > maxModIndex {
		return nil, fmt.Errorf("reading module index: %w: over %d bytes", ErrBadModIndex, maxModIndex)
	}
	first, body, _ := strings.Cut(string(b), "\n")
	if first != modIndexVersion {
		return nil, fmt.Errorf("reading module index: %w: first line is not %q", ErrBadModIndex, modIndexVersion)
	}
	if body != "" && !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	rest, prev := body, byte(0)
	for n := 2; rest != ""; n++ {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		if _, err := checkIndexLine(line); err != nil {
			return nil, fmt.Errorf("reading module index line %d: %w: %w", n, ErrBadModIndex, err)
		}
		// Sorted by kind: aliasMatches reads the aliases at the start.
		if line[0] < prev {
			return nil, fmt.Errorf("reading module index line %d: %w: %q after %q lines", n, ErrBadModIndex, line[:1], []byte{prev})
		}
		prev = line[0]
	}
	text := "\n" + body
	// Each section starts at its first line, or where the next one does.
	ms := sectionStart(text, "\nm ", len(text)-1)
	bs := sectionStart(text[:ms+1], "\nb ", ms)
	return &ModIndex{aliases: text[:bs+1], builtins: text[bs : ms+1], modules: text[ms:]}, nil
}

// sectionStart is where the first line starting with prefix is in text,
// or none when there is no such line.
func sectionStart(text, prefix string, none int) int {
	if i := strings.Index(text, prefix); i >= 0 {
		return i
	}
	return none
}

// maxModIndex bounds an index's text (Debian's is 1.5 MB).
const maxModIndex = 64 << 20

// OpenModIndex reads the gzip'd module index at path.
func OpenModIndex(path string) (*ModIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening module index: %w", err)
	}
	defer f.Close()
	return ReadModIndex(f)
}

// indexFields is one line of the index split at its spaces.
type indexFields struct {
	f [6]string
	n int
}

// checkIndexLine splits and checks one line of the index.
func checkIndexLine(line string) (indexFields, error) {
	var f indexFields
	for rest, more := line, true; more; {
		var field string
		field, rest, more = strings.Cut(rest, " ")
		if field == "" || f.n == len(f.f) {
			return f, fmt.Errorf("%q is not a module, alias or built-in line", line)
		}
		f.f[f.n] = field
		f.n++
	}
	switch {
	case f.n == 6 && f.f[0] == "m":
		name, p := f.f[1], f.f[2]
		if err := checkModuleName(name); err != nil {
			return f, err
		}
		if base, ok := ModuleName(path.Base(p)); !ok || base != name || !filepath.IsLocal(p) || path.Clean(p) != p {
			return f, fmt.Errorf("module %q: %q is not a file of it below the modules directory", name, p)
		}
	case f.n == 3 && f.f[0] == "a", f.n == 2 && f.f[0] == "b":
	default:
		return f, fmt.Errorf("%q is not a module, alias or built-in line", line)
	}
	return f, nil
}

// module returns the module file called name (normalised).
func (mi *ModIndex) module(name string) (indexedModule, bool) {
	i := strings.Index(mi.modules, "\nm "+name+" ")
	if i < 0 {
		return indexedModule{}, false
	}
	line, _, _ := strings.Cut(mi.modules[i+1:], "\n")
	f, err := checkIndexLine(line) // checked by ReadModIndex
	if err != nil {
		return indexedModule{}, false
	}
	list := func(s string) []string {
		if s == "-" {
			return nil
		}
		return strings.Split(s, ",")
	}
	return indexedModule{path: f.f[2], info: ModInfo{Name: name, Depends: list(f.f[3]), SoftPre: list(f.f[4]), SoftPost: list(f.f[5])}}, true
}

func (mi *ModIndex) isBuiltin(name string) bool {
	return strings.Contains(mi.builtins, "\nb "+name+"\n")
}

func (mi *ModIndex) isModule(name string) bool { return strings.Contains(mi.modules, "\nm "+name+" ") }

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
	if mi.isModule(n) {
		return resolve(mi, []string{n})
	}
	var files []string
	builtin := mi.isBuiltin(n)
	for _, m := range mi.aliasMatches(name) {
		if mi.isModule(m) {
			files = append(files, m)
		} else if mi.isBuiltin(m) {
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
// matches name: one pass over the alias lines, which sort first.
func (mi *ModIndex) aliasMatches(name string) []string {
	a, err := aliasNormalize(name)
	if err != nil {
		return nil
	}
	var out []string
	rest := mi.aliases[1:]
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		pattern, module, _ := strings.Cut(line[2:], " ")
		var match bool
		if strings.ContainsAny(pattern, "*?[\\") {
			match = fnmatch(pattern, a)
		} else {
			match = pattern == a
		}
		if match {
			out = appendUnique(out, module)
		}
	}
	return out
}

// moduleSource for resolve.

func (mi *ModIndex) info(name string) (*ModInfo, error) {
	if m, ok := mi.module(name); ok {
		return &m.info, nil
	}
	return nil, fmt.Errorf("module %q: %w", name, ErrModuleNotFound)
}

func (mi *ModIndex) file(name string) string {
	m, _ := mi.module(name)
	return m.path
}

func (mi *ModIndex) where() string { return "the module index" }

func (mi *ModIndex) lookupName(name string) lookupResult {
	n := normalizeName(name)
	if mi.isModule(n) {
		return lookupResult{module: n}
	}
	return lookupResult{builtin: mi.isBuiltin(n)}
}

func (mi *ModIndex) lookup(name string) (lookupResult, error) {
	if r := mi.lookupName(name); r.module != "" || r.builtin {
		return r, nil
	}
	var files []string
	for _, m := range mi.aliasMatches(name) {
		if mi.isBuiltin(m) {
			return lookupResult{builtin: true}, nil
		}
		if mi.isModule(m) {
			files = append(files, m)
		}
	}
	if len(files) == 0 {
		return lookupResult{}, nil
	}
	return lookupResult{module: pickCandidate(files)}, nil
}

// modIndexCache is where cachedModIndex keeps ix's index in cacheDir,
// named by a stat of its tree ("": the tree cannot be stat'ed).
func modIndexCache(ix *Index, cacheDir string) string {
	h := sha256.New()
	hashField(h, []byte(modIndexVersion))
	if err := hashStats(h, []string{ix.dir}, moduleTreeFiles(ix.dir)); err != nil {
		return ""
	}
	return filepath.Join(cacheDir, cacheFileName(modIndexPrefix, filepath.Base(ix.dir), hex.EncodeToString(h.Sum(nil)), ".gz"))
}

// modIndexPrefix names the cached indexes: modindex-<release>-<stamp>.gz.
const modIndexPrefix = "modindex-"

// cachedModIndex returns the gzip'd index of ix's tree from cacheDir, and
// the file that keeps it there ("": none, the tree cannot be stat'ed), or
// builds it (reading every module's .modinfo: about 0.3-0.5 s for Debian's
// 4000 modules) and keeps it there under a stat stamp of the tree, so the
// next initrd of the same kernel (another agent) does not read them again.
// A cache that cannot be written only costs the next build the reads.
func cachedModIndex(ix *Index, cacheDir string) ([]byte, string, error) {
	cached := modIndexCache(ix, cacheDir)
	if cached != "" {
		if b, err := os.ReadFile(cached); err == nil {
			return b, cached, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("reading cached module index: %w", err)
		}
	}
	ib, err := buildModIndex(ix)
	if err != nil {
		return nil, "", err
	}
	b, err := ib.encodeGzip()
	if err != nil {
		return nil, "", fmt.Errorf("encoding module index: %w", err)
	}
	if cached != "" && os.MkdirAll(cacheDir, 0o755) == nil {
		_ = writeFileAtomic(cached, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	}
	return b, cached, nil
}
