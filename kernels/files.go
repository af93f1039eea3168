package kernels

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/initrd"
)

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// writeFileAtomic replaces path with data at once.
func writeFileAtomic(path string, data []byte) error {
	return initrd.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// copyFile copies the regular file src to dst (through a temporary file,
// so dst appears complete or not at all), its mode kept.
func copyFile(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := bundle.CopySparse(dst, src); err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm())
}

// copyTree copies directory src to dst (which must not exist): regular
// files, directories and symlinks (a module tree's build and source links
// may dangle), modes kept.
func copyTree(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("copying %q: %q exists", src, dst)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return os.MkdirAll(target, fi.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return fmt.Errorf("copying %q: %q is neither a file, a directory nor a symlink", src, p)
	})
}
