package initrd

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// formatVersion is hashed into every cache key: change it whenever the
// layout Build writes changes for the same inputs.
const formatVersion = "initos-initrd newc v4, modules unsigned where the kernel allows: dirs . dev lib lib/modules proc run sbin sys tmp, dev/console 5:1, " + ModIndexName + ", sbin/" + ModprobeName + " -> /init, sbin/" + HelperName

// ModprobeName is the agent's name as the guest kernel's modprobe: the
// initrd's /sbin/<ModprobeName> is a symlink to /init (docs/contracts.md).
const ModprobeName = "initos-modprobe"

// HelperName is the process helper's name: the initrd's /sbin/<HelperName>
// (guestagent/procinit.Path), which the agent starts for each container
// process.
const HelperName = "initos-exec"

// Options says what goes into an initrd.
type Options struct {
	Kernel     *Kernel  // where the modules come from
	AgentPath  string   // the guest agent, installed as /init
	HelperPath string   // the process helper, installed as /sbin/<HelperName>
	Groups     []string // module groups to include; nil or empty: all groups
	CacheDir   string   // where initrd-<release>-<sha256>.cpio files are kept
}

// Build returns the path of the initrd for opts, writing it when the cache
// does not have it yet; a stat stamp of the inputs finds it again without
// reading them (statStamp). The file is an uncompressed newc cpio archive laid
// out as docs/contracts.md fixes: /init, /lib/modules/<name>.ko and
// /lib/modules/load.order. Its name is the SHA-256 of a format version, the
// agent and each module's name and contents and the load order, so the
// same inputs give the same file, byte for byte.
func Build(opts Options) (string, error) {
	if opts.Kernel == nil {
		return "", errors.New("building initrd: no kernel given")
	}
	if opts.AgentPath == "" {
		return "", errors.New("building initrd: no agent path given")
	}
	if opts.HelperPath == "" {
		return "", errors.New("building initrd: no process helper path given")
	}
	if opts.CacheDir == "" {
		return "", errors.New("building initrd: no cache directory given")
	}
	// The fast path: the inputs' stat (not their 10+ MB of contents)
	// names the initrd built from them last time.
	stampName := ""
	if stamp, err := statStamp(opts); err == nil {
		stampName = stampPrefix + stamp
	}
	return stamped(opts.CacheDir, stampName, "initrd-", ".cpio", func() (string, []string, error) { return build(opts) })
}

// stampPrefix names the files that map a stat stamp to an initrd.
const stampPrefix = "initrd-stat-"

// statStamp identifies opts's inputs by what stat says of them: the
// agent's, the helper's and the modules directory's files (device, inode, size, mtime and
// ctime), which a rebuilt agent or an upgraded kernel package changes (dpkg
// replaces modules.order and modules.builtin with every package), and the
// groups. A stamp that matches names the initrd Build made from the same
// files last time, without reading them.
func statStamp(opts Options) (string, error) {
	h := sha256.New()
	hashField(h, []byte(formatVersion))
	hashField(h, []byte("stat stamp v1"))
	if err := hashStats(h, []string{opts.AgentPath, opts.HelperPath, opts.Kernel.ModulesDir}, moduleTreeFiles(opts.Kernel.ModulesDir)); err != nil {
		return "", err
	}
	groups := slices.Clone(opts.Groups)
	slices.Sort(groups)
	hashField(h, []byte(strings.Join(groups, ",")))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// moduleTreeFiles are the files of a modules directory whose stat stands
// for the whole tree: dpkg replaces modules.order and modules.builtin with
// every package.
func moduleTreeFiles(modulesDir string) []string {
	var out []string
	for _, f := range []string{"kernel", "modules.order", "modules.builtin", "modules.builtin.modinfo", "modules.alias"} {
		out = append(out, filepath.Join(modulesDir, f))
	}
	return out
}

// hashStats hashes the path and stat (device, inode, size, mtime, ctime)
// of each file: the required ones must exist, a missing optional one is
// hashed as missing.
func hashStats(h hash.Hash, required, optional []string) error {
	for i, p := range append(slices.Clone(required), optional...) {
		hashField(h, []byte(p))
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) && i >= len(required) {
			hashField(h, []byte("missing"))
			continue
		}
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no stat of %q", p)
		}
		hashField(h, fmt.Appendf(nil, "%d %d %d %d.%d %d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec))
	}
	return nil
}

// build is Build without the stat stamp: it reads and hashes every input.
// used are the other files of the cache it read (the module index and
// alias caches of the kernel).
func build(opts Options) (out string, used []string, err error) {
	agent, err := os.ReadFile(opts.AgentPath)
	if err != nil {
		return "", nil, fmt.Errorf("building initrd: reading agent: %w", err)
	}
	helper, err := os.ReadFile(opts.HelperPath)
	if err != nil {
		return "", nil, fmt.Errorf("building initrd: reading the process helper: %w", err)
	}
	ix, err := newIndex(opts.Kernel.ModulesDir, opts.CacheDir)
	if err != nil {
		return "", nil, fmt.Errorf("building initrd: %w", err)
	}
	mods, err := ResolveGroups(ix, opts.Groups)
	if err != nil {
		return "", nil, fmt.Errorf("building initrd: %w", err)
	}
	entries := []cpioEntry{
		{name: ".", mode: modeDir | 0o755},
		{name: "dev", mode: modeDir | 0o755},
		// The kernel opens /dev/console for init's stdio before /init
		// runs, so it must exist in the archive.
		{name: "dev/console", mode: modeChar | 0o600, rmajor: 5, rmin: 1},
		{name: "init", mode: modeFile | 0o755, data: agent},
		{name: "lib", mode: modeDir | 0o755},
		{name: "lib/modules", mode: modeDir | 0o755},
		{name: "proc", mode: modeDir | 0o755},
		{name: "run", mode: modeDir | 0o755},
		{name: "sbin", mode: modeDir | 0o755},
		{name: "sbin/" + HelperName, mode: modeFile | 0o755, data: helper},
		{name: "sbin/" + ModprobeName, mode: modeSymlink | 0o777, data: []byte("/init")},
		{name: "sys", mode: modeDir | 0o755},
		{name: "tmp", mode: modeDir | 0o755},
	}
	h := sha256.New()
	hashField(h, []byte(formatVersion))
	hashField(h, agent)
	hashField(h, helper)
	var order strings.Builder
	unsigned := !opts.Kernel.ModulesMustBeSigned()
	for _, m := range mods {
		data, err := ReadModule(m.Path)
		if err != nil {
			return "", nil, fmt.Errorf("building initrd: %w", err)
		}
		if unsigned {
			if data, err = StripSignature(data); err != nil {
				return "", nil, fmt.Errorf("building initrd: %s: %w", m.Path, err)
			}
		}
		file := m.Name + ".ko"
		hashField(h, []byte(file))
		hashField(h, data)
		entries = append(entries, cpioEntry{name: "lib/modules/" + file, mode: modeFile | 0o644, data: data})
		fmt.Fprintf(&order, "%s %s\n", file, strings.Join(m.Groups, ","))
	}
	hashField(h, []byte(order.String()))
	entries = append(entries, cpioEntry{name: "lib/modules/load.order", mode: modeFile | 0o644, data: []byte(order.String())})
	// The whole tree's index, for the modules the guest's kernel asks for
	// later (from the kernel's modules share).
	modIndex, modIndexFile, err := cachedModIndex(ix, opts.CacheDir)
	if err != nil {
		return "", nil, fmt.Errorf("building initrd: %w", err)
	}
	hashField(h, modIndex)
	entries = append(entries, cpioEntry{name: "lib/modules/" + ModIndexName, mode: modeFile | 0o644, data: modIndex})

	for _, p := range []string{ix.aliasCache, modIndexFile} {
		if p != "" {
			used = append(used, filepath.Base(p))
		}
	}
	out = filepath.Join(opts.CacheDir, cacheFileName("initrd-", opts.Kernel.Release, hex.EncodeToString(h.Sum(nil)), ".cpio"))
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
		return out, used, nil
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("building initrd: creating cache directory: %w", err)
	}
	if err := writeFileAtomic(out, func(w io.Writer) error { return writeCpio(w, entries) }); err != nil {
		return "", nil, fmt.Errorf("building initrd: %w", err)
	}
	return out, used, nil
}

// hashField hashes b with its length in front, so no two input lists hash
// the same by shifting bytes between neighbours.
func hashField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}
