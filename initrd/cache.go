package initrd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The cache directory holds what Build and Vmlinux make (initrd-*.cpio,
// vmlinux-*, the module indexes) and the stat stamps that find them again
// (initrd-stat-*, vmlinux-stat-*). Every new agent and every new kernel
// adds files of 15-65 MB; pruneCache removes those no start has used for
// cacheMaxAge whenever a new one is made.

const (
	// stampRefresh: a stamp a start finds has its mtime brought up to date
	// at most this often, so that its age says when it was last used
	// without a write at every start.
	stampRefresh = 24 * time.Hour
	// cacheMaxAge: a stamp unused this long is removed, and then the files
	// no stamp names.
	cacheMaxAge = 30 * 24 * time.Hour
	// orphanGrace: a file no stamp names is left this long, for the Build
	// or Vmlinux that wrote it and writes its stamp next.
	orphanGrace = time.Hour
)

// stampKinds are the prefixes of the stamps, each naming a file of the
// cache by its base name.
var stampKinds = []string{stampPrefix, vmlinuxStampPrefix}

// cachedKinds are the prefixes of the files the cache keeps for stamps
// (initrds, vmlinux files) or on its own (module aliases and indexes,
// which a stat of their kernel's tree names).
var cachedKinds = []string{"initrd-", "vmlinux-", aliasCachePrefix, modIndexPrefix}

// aliasCachePrefix names the cached module alias tables:
// modaliases-<release>-<stamp>.
const aliasCachePrefix = "modaliases-"

// releaseFiles are the kinds of cache files made for one kernel release
// (cacheFileName): its vmlinux, the initrds with its modules, and its
// modules' index and alias table.
var releaseFiles = []struct{ kind, suffix string }{
	{"vmlinux-", ""}, {"initrd-", ".cpio"}, {modIndexPrefix, ".gz"}, {aliasCachePrefix, ""},
}

// cacheFileName is the name of a cache file of kind made for the kernel
// release (the base name of its modules directory), told apart by sum
// (hex): kind, release, "-", sum, suffix. Without a release, kind, sum
// and suffix.
func cacheFileName(kind, release, sum, suffix string) string {
	if release == "" {
		return kind + sum + suffix
	}
	return kind + release + "-" + sum + suffix
}

// isCacheFileOf reports whether name is a cacheFileName of kind and suffix
// for release: a release that extends it (6.1.0-custom beside 6.1.0) is
// another's.
func isCacheFileOf(name, kind, release, suffix string) bool {
	rest, ok := strings.CutPrefix(name, kind+release+"-")
	if !ok {
		return false
	}
	if rest, ok = strings.CutSuffix(rest, suffix); !ok || rest == "" {
		return false
	}
	return strings.Trim(rest, "0123456789abcdef") == ""
}

// isReleaseFile reports whether name is one of releaseFiles of release.
func isReleaseFile(name, release string) bool {
	for _, k := range releaseFiles {
		if isCacheFileOf(name, k.kind, release, k.suffix) {
			return true
		}
	}
	return false
}

// stamped returns the file of cacheDir that the stamp stampName names (a
// base name with prefix and suffix), or makes it with create, which returns
// the file's path and the other cache files it used; the stamp is then
// written to name the file, and what older inputs left is pruned. An empty
// stampName (the inputs could not be stat'ed) skips the stamp: create runs
// at every call.
func stamped(cacheDir, stampName, prefix, suffix string, create func() (string, []string, error)) (string, error) {
	now := time.Now()
	if stampName != "" {
		if p, ok := readStampFile(cacheDir, stampName, prefix, suffix, now); ok {
			return p, nil
		}
	}
	out, used, err := create()
	if err != nil {
		return "", err
	}
	keep := append(used, filepath.Base(out))
	if stampName != "" {
		// A stamp that cannot be written only costs the next start a hash.
		_ = writeStamp(cacheDir, stampName, filepath.Base(out))
		keep = append(keep, stampName)
	}
	// New inputs (an upgrade): what older ones left goes once unused. Best
	// effort: a cache that cannot be pruned still serves.
	_ = pruneCache(cacheDir, keep, now)
	return out, nil
}

// readStampFile returns the path of the file that the stamp stampName (in
// cacheDir) names and whether that file exists in cacheDir as a regular
// file whose name has prefix and suffix. A stamp last refreshed more than
// stampRefresh before now gets now as its mtime.
func readStampFile(cacheDir, stampName, prefix, suffix string, now time.Time) (string, bool) {
	path := filepath.Join(cacheDir, stampName)
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return "", false
	}
	name := string(b)
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) || strings.ContainsRune(name, '/') {
		return "", false
	}
	p := filepath.Join(cacheDir, name)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	if fi, err := f.Stat(); err == nil && now.Sub(fi.ModTime()) > stampRefresh {
		// Best effort: a stamp that stays old is only pruned, and the
		// next start makes it again.
		_ = os.Chtimes(path, now, now)
	}
	return p, true
}

// writeStamp records that the stamp names file (a base name in cacheDir).
func writeStamp(cacheDir, stampName, file string) error {
	return writeFileAtomic(filepath.Join(cacheDir, stampName), func(w io.Writer) error {
		_, err := io.WriteString(w, file)
		return err
	})
}

// pruneCache removes from dir the stamps last used more than cacheMaxAge
// before now, then the cached files that no stamp names and that are older
// than orphanGrace (module indexes and alias caches, which have no stamp,
// once older than cacheMaxAge), except keep (base names). A file another
// process still reads is unaffected (an open file outlives its name); a
// start that found a stamp refreshed it first. Errors are collected: one
// file that cannot be removed does not stop the others.
func pruneCache(dir string, keep []string, now time.Time) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pruning cache %s: %w", dir, err)
	}
	var errs []error
	remove := func(name string) {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("pruning cache: %w", err))
		}
	}
	age := func(e fs.DirEntry) (time.Duration, bool) {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		return now.Sub(fi.ModTime()), true
	}
	named := map[string]bool{}
	for _, k := range keep {
		named[k] = true
	}
	for _, e := range entries {
		if !isStamp(e.Name()) {
			continue
		}
		a, ok := age(e)
		if !ok {
			continue
		}
		if a > cacheMaxAge && !named[e.Name()] {
			remove(e.Name())
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			named[string(b)] = true
		}
	}
	for _, e := range entries {
		name := e.Name()
		if isStamp(name) || named[name] || !isCached(name) {
			continue
		}
		a, ok := age(e)
		if !ok {
			continue
		}
		grace := orphanGrace
		if strings.HasPrefix(name, aliasCachePrefix) || strings.HasPrefix(name, modIndexPrefix) {
			grace = cacheMaxAge
		}
		if a > grace {
			remove(name)
		}
	}
	return errors.Join(errs...)
}

func isStamp(name string) bool {
	for _, p := range stampKinds {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// isCached: a file the cache made (not a temporary file of a write in
// progress, which starts with a dot).
func isCached(name string) bool {
	for _, p := range cachedKinds {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// RemoveKernel removes from cacheDir what was made for the kernel of
// release: its vmlinux files (65 MB each, 31 on disk), the initrds built
// with its modules (15-20 MB each, one per agent), its modules' index and
// alias table, and the stamps that name any of them; pruneCache would
// keep them until a new file is made and 30 days have passed. Files of an
// older runtime, whose names carry no release, are left to pruneCache. A
// missing cache is nothing to remove. The caller holds the kernel so that
// no start can be making one meanwhile.
func RemoveKernel(cacheDir, release string) error {
	entries, err := os.ReadDir(cacheDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the cache files of kernel %q: %w", release, err)
	}
	var errs []error
	remove := func(name string) {
		if err := os.Remove(filepath.Join(cacheDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, e := range entries {
		name := e.Name()
		if !isStamp(name) || !e.Type().IsRegular() {
			continue
		}
		// A stamp first, then its file: a stamp never names what is gone.
		if b, err := os.ReadFile(filepath.Join(cacheDir, name)); err == nil && isReleaseFile(string(b), release) {
			remove(name)
		}
	}
	for _, e := range entries {
		// A stamp's name (initrd-stat-…) is never a release's file name:
		// a release begins with its version number.
		if name := e.Name(); isReleaseFile(name, release) && e.Type().IsRegular() {
			remove(name)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing the cache files of kernel %q: %w", release, errors.Join(errs...))
	}
	return nil
}
