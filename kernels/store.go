package kernels

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/initos-runtime/initos-runtime/initrd"
)

// Files of the store besides the kernels' own.
const (
	defaultFile = "default" // the default release, one line
	locksDir    = ".locks"  // <release>.lock: held shared by each VM booting it
	stagingDir  = ".add"    // where Add unpacks before installing
)

// Store is a directory of guest kernels laid out as extracted Debian
// linux-image packages (boot/vmlinuz-<release>, lib/modules/<release>),
// several releases side by side, and which of them is the default.
type Store struct {
	Root string
	// CacheDir is the initrd cache (initrd.Vmlinux's), whose vmlinux files
	// of a removed kernel Remove removes too; empty: none.
	CacheDir string
	// extractDeb unpacks a .deb's files into dir (dpkg-deb -x).
	extractDeb func(ctx context.Context, deb, dir string) error
}

// Open is the store at root.
func Open(root string) *Store { return &Store{Root: root, extractDeb: dpkgExtract} }

// Entry is a kernel of the store as List reports it.
type Entry struct {
	*initrd.Kernel
	Default bool // the release new containers boot without an annotation
	InUse   bool // a VM booted from it runs
}

// List returns the store's kernels, lowest release first.
func (s *Store) List() ([]Entry, error) {
	ks, err := initrd.ListKernels(s.Root)
	if err != nil {
		return nil, err
	}
	def, err := s.defaultRelease(ks)
	if err != nil {
		return nil, err
	}
	var es []Entry
	for _, k := range ks {
		inUse, err := s.inUse(k.Release)
		if err != nil {
			return nil, err
		}
		es = append(es, Entry{Kernel: k, Default: k.Release == def, InUse: inUse})
	}
	return es, nil
}

// Find returns the kernel of release, or with "" the default one.
func (s *Store) Find(release string) (*initrd.Kernel, error) {
	k, _, _, err := s.find(release)
	return k, err
}

// find is Find that also returns what it read: every kernel of the store
// and the default release.
func (s *Store) find(release string) (k *initrd.Kernel, ks []*initrd.Kernel, def string, err error) {
	if err := checkRelease(release); err != nil {
		return nil, nil, "", err
	}
	if ks, err = initrd.ListKernels(s.Root); err != nil {
		return nil, nil, "", err
	}
	if def, err = s.defaultRelease(ks); err != nil {
		return nil, nil, "", err
	}
	want := release
	if want == "" {
		want = def
	}
	for _, k := range ks {
		if k.Release == want {
			return k, ks, def, nil
		}
	}
	if want == "" {
		return nil, nil, "", fmt.Errorf("finding a kernel in %q: %w", s.Root, initrd.ErrNoKernel)
	}
	return nil, nil, "", fmt.Errorf("kernel %q: %w in %q (initos-runtime kernel list)", want, ErrNotAdded, s.Root)
}

// defaultRelease is the release the default file names, or without one
// the highest of ks ("" when there is none).
func (s *Store) defaultRelease(ks []*initrd.Kernel) (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Root, defaultFile))
	if errors.Is(err, fs.ErrNotExist) {
		if len(ks) == 0 {
			return "", nil
		}
		return ks[len(ks)-1].Release, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the default kernel: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// SetDefault makes release the kernel new containers boot.
func (s *Store) SetDefault(release string) error {
	if _, err := s.Find(release); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.Root, defaultFile), []byte(release+"\n")); err != nil {
		return fmt.Errorf("setting the default kernel: %w", err)
	}
	return nil
}

// Hold finds the kernel of release ("" for the default) and holds it for a
// VM booting from it: until unhold, Remove refuses it. A kernel that is
// being removed cannot be held.
func (s *Store) Hold(release string) (_ *initrd.Kernel, unhold func(), err error) {
	k, err := s.Find(release)
	if err != nil {
		return nil, nil, err
	}
	f, err := s.lockFile(k.Release)
	if err != nil {
		return nil, nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("kernel %q: %w", k.Release, ErrBeingRemoved)
		}
		return nil, nil, fmt.Errorf("holding kernel %q: %w", k.Release, err)
	}
	// Removed between Find and the lock: gone.
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("kernel %q: %w", k.Release, ErrBeingRemoved)
	}
	return k, func() { f.Close() }, nil
}

// inUse reports whether a VM holds release.
func (s *Store) inUse(release string) (bool, error) {
	f, err := os.Open(filepath.Join(s.Root, locksDir, release+".lock"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking kernel %q: %w", release, err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}

func (s *Store) lockFile(release string) (*os.File, error) {
	dir := filepath.Join(s.Root, locksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %q: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, release+".lock"), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock of kernel %q: %w", release, err)
	}
	return f, nil
}

// Remove deletes the kernel of release, and the vmlinux made from it in
// CacheDir. It refuses a kernel a VM runs from, the default one (the next
// default would be a silent choice) and the last one (no container could
// start); running VMs never need the files again (their VMMs loaded kernel
// and initrd at start).
func (s *Store) Remove(release string) error {
	k, ks, def, err := s.find(release)
	if err != nil {
		return err
	}
	switch {
	case len(ks) == 1:
		return fmt.Errorf("kernel %q: %w: add another first (initos-runtime kernel add)", k.Release, ErrLastKernel)
	case def == k.Release:
		return fmt.Errorf("kernel %q: %w: make another the default first (initos-runtime kernel default VERSION)", k.Release, ErrIsDefault)
	}
	f, err := s.lockFile(k.Release)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("kernel %q: %w: stop the containers booted from it first", k.Release, ErrInUse)
		}
		return fmt.Errorf("locking kernel %q: %w", k.Release, err)
	}
	errs := s.removeFiles(k)
	if s.CacheDir != "" {
		if err := initrd.RemoveKernel(s.CacheDir, k.Release); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(f.Name()); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing kernel %q: %w", k.Release, errors.Join(errs...))
	}
	return nil
}

// removeFiles removes a kernel's files, the boot file first: once it is
// gone the kernel is no longer found.
func (s *Store) removeFiles(k *initrd.Kernel) (errs []error) {
	for _, p := range []string{k.Vmlinuz, filepath.Join(s.Root, "boot", "config-"+k.Release), filepath.Join(s.Root, "boot", "System.map-"+k.Release)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(k.ModulesDir); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Add installs the kernels of src: a linux-image .deb, or a directory laid
// out as one extracted (boot/vmlinuz-<release>, lib/modules/<release> or
// usr/lib/modules/<release>). A release the store has is refused. Nothing
// is left of a failed Add.
func (s *Store) Add(ctx context.Context, src string) (added []*initrd.Kernel, err error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("adding a kernel: %w", err)
	}
	if err := os.MkdirAll(s.Root, 0o755); err != nil {
		return nil, fmt.Errorf("creating %q: %w", s.Root, err)
	}
	// A package is unpacked in the store's own directory and moved into
	// place; a directory is the caller's: copied.
	tree, moveTree, moveFile := src, copyTree, copyFile
	if !fi.IsDir() {
		if !strings.HasSuffix(src, ".deb") {
			return nil, fmt.Errorf("adding kernel %q: %w", src, ErrNotAPackage)
		}
		staging, err := os.MkdirTemp(s.Root, stagingDir)
		if err != nil {
			return nil, fmt.Errorf("adding kernel %q: %w", src, err)
		}
		defer os.RemoveAll(staging)
		if err := s.extractDeb(ctx, src, staging); err != nil {
			return nil, fmt.Errorf("adding kernel %q: %w", src, err)
		}
		tree, moveTree, moveFile = staging, os.Rename, os.Rename
	}
	ks, err := initrd.ListKernels(tree)
	if err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("adding kernel %q: %w (no boot/vmlinuz-<release> with lib/modules/<release>)", src, ErrNotAPackage)
	}
	for _, k := range ks {
		if _, err := os.Stat(filepath.Join(s.Root, "boot", "vmlinuz-"+k.Release)); err == nil {
			return nil, fmt.Errorf("adding kernel %q: %w", k.Release, ErrAlreadyAdded)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.Root, "boot"), 0o755); err != nil {
		return nil, fmt.Errorf("adding a kernel: %w", err)
	}
	defer func() {
		if err != nil {
			for _, k := range added {
				s.removeFiles(k)
			}
			added = nil
		}
	}()
	for _, k := range ks {
		rel, err := filepath.Rel(tree, k.ModulesDir)
		if err != nil {
			return added, err
		}
		in := &initrd.Kernel{Release: k.Release, Vmlinuz: filepath.Join(s.Root, "boot", "vmlinuz-"+k.Release), ModulesDir: filepath.Join(s.Root, rel)}
		// The modules first, the boot file last: a kernel is found only
		// once both are there.
		// Modules without a boot file are what a failed Add left.
		if err := os.RemoveAll(in.ModulesDir); err != nil {
			return added, fmt.Errorf("adding kernel %q: %w", k.Release, err)
		}
		if err := os.MkdirAll(filepath.Dir(in.ModulesDir), 0o755); err != nil {
			return added, fmt.Errorf("adding kernel %q: %w", k.Release, err)
		}
		if err := moveTree(k.ModulesDir, in.ModulesDir); err != nil {
			_ = os.RemoveAll(in.ModulesDir)
			return added, fmt.Errorf("adding kernel %q: %w", k.Release, err)
		}
		added = append(added, in)
		for _, extra := range []string{"config-", "System.map-"} {
			if p := filepath.Join(filepath.Dir(k.Vmlinuz), extra+k.Release); fileExists(p) {
				if err := moveFile(p, filepath.Join(s.Root, "boot", extra+k.Release)); err != nil {
					return added, fmt.Errorf("adding kernel %q: %w", k.Release, err)
				}
			}
		}
		if err := moveFile(k.Vmlinuz, in.Vmlinuz); err != nil {
			return added, fmt.Errorf("adding kernel %q: %w", k.Release, err)
		}
	}
	return added, nil
}

// dpkgExtract unpacks deb into dir with dpkg-deb -x.
func dpkgExtract(ctx context.Context, deb, dir string) error {
	bin, err := exec.LookPath("dpkg-deb")
	if err != nil {
		return fmt.Errorf("unpacking %q: %w (install the dpkg package)", deb, err)
	}
	out, err := exec.CommandContext(ctx, bin, "-x", deb, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("unpacking %q with dpkg-deb: %w: %s", deb, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkRelease refuses a release that is not a plain file name part ("":
// the default).
func checkRelease(release string) error {
	if release == "." || release == ".." || strings.ContainsAny(release, "/\x00\n") || len(release) > 128 {
		return fmt.Errorf("kernel release %q: %w", release, ErrBadRelease)
	}
	return nil
}
