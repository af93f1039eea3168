package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// OverlayKey names the content of an overlay mount, given its options, for
// a DiskCache: its read-only lower dirs (an image's layers never change
// once committed) and what little the engine put in its upper dir before
// the start, the empty mount points podman makes for its binds
// (etc/hosts, run/.containerenv). It is "" when anything may differ: an
// upper dir with data, or lower dirs relative to a directory the options
// do not name.
func OverlayKey(options []string) string {
	var lower, upper string
	for _, o := range options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lower = v
		}
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		}
	}
	if lower == "" {
		return ""
	}
	for _, l := range strings.Split(lower, ":") {
		if !filepath.IsAbs(l) {
			return ""
		}
	}
	key := "overlay:" + lower
	if upper != "" {
		placeholders, ok := upperPlaceholders(upper)
		if !ok {
			return ""
		}
		if placeholders != "" {
			key += "|" + placeholders
		}
	}
	return key
}

// maxPlaceholders bounds the upper dir entries a cacheable rootfs may have.
const maxPlaceholders = 64

// upperPlaceholders describes an upper dir made only of directories,
// symlinks and empty files (mount points), as a digest; ok is false for
// anything else (data, whiteouts, too many entries).
func upperPlaceholders(upper string) (digest string, ok bool) {
	var lines []string
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == upper {
			return nil
		}
		if len(lines) >= maxPlaceholders {
			return errNotCacheable
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if st == nil {
			return errNotCacheable
		}
		rel, _ := filepath.Rel(upper, p)
		line := fmt.Sprintf("%s %o %d:%d", rel, uint32(fi.Mode()), st.Uid, st.Gid)
		switch {
		case fi.Mode().IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case fi.Mode().IsRegular() && fi.Size() == 0:
		default:
			return errNotCacheable // data, a whiteout (0:0 char device), a fifo
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		return "", false
	}
	if len(lines) == 0 {
		return "", true
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:]), true
}

var errNotCacheable = errors.New("not cacheable")
