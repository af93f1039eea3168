package initrd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// writeFileAtomic creates path with mode 0644 from what write produces: the
// data goes to a temporary file in the same directory, is synced and renamed
// over path, so readers see either no file or the complete one. Nothing is
// left behind on error.
func writeFileAtomic(path string, write func(w io.Writer) error) error {
	return writeFileAtomicRaw(path, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		if err := write(bw); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("writing %q: %w", f.Name(), err)
		}
		return nil
	})
}

// writeFileAtomicRaw is writeFileAtomic for writers that need the file
// itself, e.g. to start over.
func writeFileAtomicRaw(path string, write func(f *os.File) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating temporary file for %q: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("setting mode of %q: %w", tmp, err)
	}
	// A cache entry that a crash left empty would be trusted forever: sync
	// before the rename makes it visible.
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %q: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %q: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %q to %q: %w", tmp, path, err)
	}
	return nil
}

// WriteFileAtomic is writeFileAtomic for other packages.
func WriteFileAtomic(path string, write func(w io.Writer) error) error {
	return writeFileAtomic(path, write)
}
