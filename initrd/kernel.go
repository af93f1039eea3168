package initrd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Kernel is a kernel found in an extracted linux-image package.
type Kernel struct {
	Release    string // e.g. 6.1.0-56-amd64
	Vmlinuz    string // .../boot/vmlinuz-<release>
	ModulesDir string // .../lib/modules/<release>
}

// moduleRoots are where packages put lib/modules: Debian 12 uses /lib, newer
// (merged-/usr) packages /usr/lib.
var moduleRoots = []string{"lib/modules", "usr/lib/modules"}

// FindKernel finds boot/vmlinuz-<release> under root (a directory where a
// linux-image deb was extracted with dpkg-deb -x) whose lib/modules/<release>
// directory exists. With several, the highest release wins.
func FindKernel(root string) (*Kernel, error) {
	ks, err := ListKernels(root)
	if err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("finding boot/vmlinuz-<release> with lib/modules/<release> in %q: %w", root, ErrNoKernel)
	}
	return ks[len(ks)-1], nil
}

// ListKernels lists every kernel under root as FindKernel finds them,
// lowest release first; a root that does not exist holds none.
func ListKernels(root string) ([]*Kernel, error) {
	images, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return nil, fmt.Errorf("listing kernels in %q: %w", root, err)
	}
	var ks []*Kernel
	for _, img := range images {
		if fi, err := os.Stat(img); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		release := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		if release == "" {
			continue
		}
		for _, mr := range moduleRoots {
			dir := filepath.Join(root, mr, release)
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				continue
			}
			ks = append(ks, &Kernel{Release: release, Vmlinuz: img, ModulesDir: dir})
			break
		}
	}
	slices.SortFunc(ks, func(a, b *Kernel) int { return CompareVersions(a.Release, b.Release) })
	return ks, nil
}

// CompareVersions orders kernel releases: runs of digits compare as numbers,
// other runs as strings, so 6.1.0-10 > 6.1.0-9 and 6.10 > 6.9.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		ra, resta := versionRun(a)
		rb, restb := versionRun(b)
		if c := compareRun(ra, rb); c != 0 {
			return c
		}
		a, b = resta, restb
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	default:
		return 1
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// versionRun splits s after its leading run of digits or of non-digits.
func versionRun(s string) (run, rest string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

func compareRun(a, b string) int {
	if isDigit(a[0]) && isDigit(b[0]) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}
