package initrd

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"
)

// ModInfo is what a module's .modinfo section says about its dependencies.
type ModInfo struct {
	Name     string   // name=, normalised
	Depends  []string // depends=: module names, normalised
	SoftPre  []string // softdep= "pre:" entries: module names or aliases
	SoftPost []string // softdep= "post:" entries
	Aliases  []string // alias=
}

// moduleSuffixes are the module file names the index accepts, with the
// decompressor for each.
var moduleSuffixes = []struct {
	suffix string
	decode func(dst io.Writer, src []byte) error
}{
	{".ko", nil},
	{".ko.xz", decodeXZ},
	{".ko.zst", decodeZstdFrames},
	{".ko.gz", decodeGzip},
}

// ModuleName splits a module file name (.ko, .ko.xz, .ko.zst, .ko.gz) into
// the kernel's (normalised) module name and whether it is a module at all.
func ModuleName(base string) (name string, ok bool) {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(base, s.suffix) && len(base) > len(s.suffix) {
			return normalizeName(strings.TrimSuffix(base, s.suffix)), true
		}
	}
	return "", false
}

// normalizeName turns a module name into the form the kernel uses: '-' is '_'.
func normalizeName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// ReadModule returns the uncompressed bytes of a module file (.ko, or
// .ko.xz/.ko.zst/.ko.gz, decompressed in-process).
func ReadModule(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading module: %w", err)
	}
	for _, s := range moduleSuffixes {
		if s.decode != nil && strings.HasSuffix(path, s.suffix) {
			var buf bytes.Buffer
			if err := s.decode(&buf, data); err != nil {
				return nil, fmt.Errorf("decompressing module %q: %w", path, err)
			}
			return buf.Bytes(), nil
		}
	}
	return data, nil
}

// ReadModInfo reads the .modinfo section of the module file path (.ko, or
// .ko.xz/.ko.zst/.ko.gz).
func ReadModInfo(path string) (*ModInfo, error) {
	var ra io.ReaderAt
	if strings.HasSuffix(path, ".ko") {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("reading modinfo: %w", err)
		}
		defer f.Close()
		ra = f
	} else {
		data, err := ReadModule(path)
		if err != nil {
			return nil, err
		}
		ra = bytes.NewReader(data)
	}
	ef, err := elf.NewFile(ra)
	if err != nil {
		return nil, fmt.Errorf("reading modinfo of %q: %w", path, err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("reading modinfo of %q: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %q: %w", path, err)
	}
	return parseModInfo(data), nil
}

// parseModInfo parses a .modinfo section: NUL-separated key=value strings.
// A key may repeat (alias=, and softdep= once per MODULE_SOFTDEP).
func parseModInfo(data []byte) *ModInfo {
	mi := &ModInfo{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = normalizeName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, normalizeName(d))
				}
			}
		case "softdep":
			pre, post := parseSoftdep(v)
			mi.SoftPre = append(mi.SoftPre, pre...)
			mi.SoftPost = append(mi.SoftPost, post...)
		case "alias":
			mi.Aliases = append(mi.Aliases, v)
		}
	}
	return mi
}

// parseSoftdep parses "pre: a b post: c". Names before any "pre:" or "post:"
// belong to neither and are dropped, as modprobe does.
func parseSoftdep(v string) (pre, post []string) {
	var cur *[]string
	for _, f := range strings.Fields(v) {
		switch f {
		case "pre:":
			cur = &pre
		case "post:":
			cur = &post
		default:
			if cur != nil {
				*cur = append(*cur, f)
			}
		}
	}
	return pre, post
}
