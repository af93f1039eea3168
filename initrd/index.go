package initrd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Index maps module names to the files of one lib/modules/<release>
// directory and knows which modules are built into the kernel. It is safe
// for concurrent use.
type Index struct {
	dir   string
	files map[string]string // normalised name → module file

	builtin        map[string]bool     // normalised names of built-in modules
	builtinAliases map[string][]string // alias → built-in modules (modules.builtin.modinfo)

	mu      sync.Mutex
	infos   map[string]*ModInfo
	aliases map[string][]string // alias → modules; nil until first needed
	globs   []aliasGlob         // aliases with wildcards

	// aliasCache, when set, is a modules.alias-format file that keeps the
	// aliases read from the modules' .modinfo for the next process.
	aliasCache string
}

type aliasGlob struct{ pattern, module string }

// NewIndex indexes modulesDir (lib/modules/<release>): the module files
// under kernel/ (.ko, .ko.xz, .ko.zst, .ko.gz), modules.builtin, and the
// aliases of built-in modules in modules.builtin.modinfo. Aliases of module
// files are read from modules.alias when the tree has one, else from the
// modules' .modinfo the first time an alias is looked up.
func NewIndex(modulesDir string) (*Index, error) {
	return newIndex(modulesDir, "")
}

// aliasCacheVersion is hashed into alias cache names; change it when the
// cache file's format changes.
const aliasCacheVersion = "initos-modaliases v1"

// newIndex is NewIndex that, with cacheDir set, keeps the aliases it has to
// read from every module in cacheDir (about 200 ms for Debian's 4000
// modules, against 10 ms to read them back). The cache file is named by a
// hash of the modules directory and the path, size and mtime of each module
// file in it.
func newIndex(modulesDir, cacheDir string) (*Index, error) {
	if modulesDir == "" {
		return nil, errors.New("indexing modules: no modules directory given")
	}
	ix := &Index{
		dir:            modulesDir,
		files:          map[string]string{},
		builtin:        map[string]bool{},
		builtinAliases: map[string][]string{},
		infos:          map[string]*ModInfo{},
	}
	kdir := filepath.Join(modulesDir, "kernel")
	fp := sha256.New()
	fmt.Fprintf(fp, "%s\x00%s\x00", aliasCacheVersion, modulesDir)
	err := filepath.WalkDir(kdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name, ok := ModuleName(d.Name())
		if !ok {
			return nil
		}
		if prev, dup := ix.files[name]; dup {
			return fmt.Errorf("module %q is both %q and %q", name, prev, p)
		}
		ix.files[name] = p
		if cacheDir != "" {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			// WalkDir goes in lexical order: the fingerprint is stable.
			fmt.Fprintf(fp, "%s\x00%d\x00%d\x00", p, fi.Size(), fi.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules in %q: %w", modulesDir, err)
	}
	if cacheDir != "" {
		ix.aliasCache = filepath.Join(cacheDir, cacheFileName(aliasCachePrefix, filepath.Base(modulesDir), hex.EncodeToString(fp.Sum(nil)), ""))
	}
	if err := ix.readBuiltin(); err != nil {
		return nil, err
	}
	if err := ix.readBuiltinModinfo(); err != nil {
		return nil, err
	}
	if err := ix.readModulesAlias(); err != nil {
		return nil, err
	}
	return ix, nil
}

// Dir returns the lib/modules/<release> directory of the index.
func (ix *Index) Dir() string { return ix.dir }

func (ix *Index) file(name string) string { return ix.files[name] }
func (ix *Index) where() string           { return ix.dir }

// readBuiltin reads modules.builtin: one kernel/.../name.ko path a line.
func (ix *Index) readBuiltin() error {
	p := filepath.Join(ix.dir, "modules.builtin")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading built-in modules: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if name, ok := ModuleName(path.Base(strings.TrimSpace(sc.Text()))); ok {
			ix.builtin[name] = true
		}
	}
	return nil
}

// readBuiltinModinfo reads modules.builtin.modinfo: NUL-separated
// "module.key=value" strings, of which it keeps the aliases.
func (ix *Index) readBuiltinModinfo() error {
	p := filepath.Join(ix.dir, "modules.builtin.modinfo")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading built-in module aliases: %w", err)
	}
	for _, rec := range bytes.Split(data, []byte{0}) {
		key, val, ok := strings.Cut(string(rec), "=")
		if !ok {
			continue
		}
		mod, field, ok := strings.Cut(key, ".")
		if !ok {
			continue
		}
		mod = normalizeName(mod)
		ix.builtin[mod] = true
		if field == "alias" {
			a := normalizeName(val)
			ix.builtinAliases[a] = appendUnique(ix.builtinAliases[a], mod)
		}
	}
	return nil
}

// readModulesAlias reads modules.alias ("alias PATTERN module" lines) when
// depmod has written one, which saves opening every module.
func (ix *Index) readModulesAlias() error {
	_, err := ix.readAliasFile(filepath.Join(ix.dir, "modules.alias"))
	return err
}

// readAliasFile loads a modules.alias-format file if it exists.
func (ix *Index) readAliasFile(p string) (bool, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading module aliases: %w", err)
	}
	ix.aliases = map[string][]string{}
	ix.globs = nil
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "alias" {
			ix.addAlias(f[1], normalizeName(f[2]))
		}
	}
	return true, nil
}

// writeAliasCache saves the alias table in ix.aliasCache.
func (ix *Index) writeAliasCache() error {
	var lines []string
	for a, mods := range ix.aliases {
		for _, m := range mods {
			lines = append(lines, "alias "+a+" "+m+"\n")
		}
	}
	for _, g := range ix.globs {
		lines = append(lines, "alias "+g.pattern+" "+g.module+"\n")
	}
	sort.Strings(lines)
	if err := os.MkdirAll(filepath.Dir(ix.aliasCache), 0o755); err != nil {
		return fmt.Errorf("creating cache directory: %w", err)
	}
	err := writeFileAtomic(ix.aliasCache, func(w io.Writer) error {
		_, err := io.WriteString(w, "# module aliases of "+ix.dir+"\n"+strings.Join(lines, ""))
		return err
	})
	if err != nil {
		return fmt.Errorf("caching module aliases: %w", err)
	}
	return nil
}

func (ix *Index) addAlias(alias, module string) {
	a := normalizeName(alias)
	if strings.ContainsAny(a, "*?[") {
		ix.globs = append(ix.globs, aliasGlob{a, module})
		return
	}
	ix.aliases[a] = appendUnique(ix.aliases[a], module)
}

// loadAliases reads the aliases of every module file, in parallel. Called
// with ix.mu held.
func (ix *Index) loadAliases() error {
	if ix.aliases != nil {
		return nil
	}
	if ix.aliasCache != "" {
		if ok, err := ix.readAliasFile(ix.aliasCache); err != nil || ok {
			return err
		}
	}
	if err := ix.readAllInfos(); err != nil {
		return err
	}
	ix.aliases = map[string][]string{}
	for n, mi := range ix.infos {
		for _, a := range mi.Aliases {
			ix.addAlias(a, n)
		}
	}
	if ix.aliasCache != "" {
		return ix.writeAliasCache()
	}
	return nil
}

// readAllInfos reads the modinfo of every module file not read yet, in
// parallel. Called with ix.mu held.
func (ix *Index) readAllInfos() error {
	names := make([]string, 0, len(ix.files))
	for n := range ix.files {
		if ix.infos[n] == nil {
			names = append(names, n)
		}
	}
	infos := make([]*ModInfo, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				infos[i], errs[i] = ReadModInfo(ix.files[names[i]])
			}
		})
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reading modinfo in %q: %w", ix.dir, err)
	}
	for i, n := range names {
		ix.infos[n] = infos[i]
	}
	return nil
}

// info returns the modinfo of the module file called name.
func (ix *Index) info(name string) (*ModInfo, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if mi := ix.infos[name]; mi != nil {
		return mi, nil
	}
	mi, err := ReadModInfo(ix.files[name])
	if err != nil {
		return nil, err
	}
	ix.infos[name] = mi
	return mi, nil
}

// lookupResult says how a name was found.
type lookupResult struct {
	module  string // module file to load; "" when built in or absent
	builtin bool
}

// lookupName finds a module by its name only (as depends= lists them).
func (ix *Index) lookupName(name string) lookupResult {
	n := normalizeName(name)
	if _, ok := ix.files[n]; ok {
		return lookupResult{module: n}
	}
	if ix.builtin[n] {
		return lookupResult{builtin: true}
	}
	return lookupResult{}
}

// lookup finds a module by name or, failing that, by alias (softdep= may
// name either). A built-in match wins, since it needs nothing loaded. When
// several module files share the alias (crypto-crc32c: crc32c_generic and
// crc32c_intel), the portable *_generic implementation is taken, else the
// first name in sort order, so the result does not depend on the host CPU.
func (ix *Index) lookup(name string) (lookupResult, error) {
	if r := ix.lookupName(name); r.module != "" || r.builtin {
		return r, nil
	}
	a := normalizeName(name)
	if len(ix.builtinAliases[a]) > 0 {
		return lookupResult{builtin: true}, nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if err := ix.loadAliases(); err != nil {
		return lookupResult{}, err
	}
	cands := append([]string(nil), ix.aliases[a]...)
	for _, g := range ix.globs {
		if ok, _ := path.Match(g.pattern, a); ok {
			cands = appendUnique(cands, g.module)
		}
	}
	if len(cands) == 0 {
		return lookupResult{}, nil
	}
	return lookupResult{module: pickCandidate(cands)}, nil
}

// pickCandidate chooses among the modules that share an alias: the
// portable *_generic implementation, else the first name in sort order.
func pickCandidate(cands []string) string {
	cands = slices.Clone(cands)
	sort.Slice(cands, func(i, j int) bool {
		gi, gj := strings.HasSuffix(cands[i], "_generic"), strings.HasSuffix(cands[j], "_generic")
		if gi != gj {
			return gi
		}
		return cands[i] < cands[j]
	})
	return cands[0]
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
