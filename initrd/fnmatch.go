package initrd

import (
	"fmt"
	"strings"
)

// fnmatch reports whether name matches pattern as glibc's fnmatch(3) with
// no flags does, which is how modprobe matches the wildcard aliases of
// modules.alias: '*' is any run of bytes (slashes included), '?' one byte,
// '[...]' a set of bytes ('!' or '^' first negates it, ']' first is a
// member, a-z a range), and '\' makes the next byte literal. A '[' with no
// closing ']' is a literal '['.
func fnmatch(pattern, name string) bool {
	for len(pattern) > 0 {
		switch c := pattern[0]; c {
		case '*':
			for len(pattern) > 0 && pattern[0] == '*' {
				pattern = pattern[1:]
			}
			if pattern == "" {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if fnmatch(pattern, name[i:]) {
					return true
				}
			}
			return false
		case '?':
			if name == "" {
				return false
			}
			pattern, name = pattern[1:], name[1:]
		case '[':
			if name == "" {
				return false
			}
			ok, rest, valid := matchBracket(pattern, name[0])
			if !valid {
				// A literal '['.
				if name[0] != '[' {
					return false
				}
				pattern, name = pattern[1:], name[1:]
				continue
			}
			if !ok {
				return false
			}
			pattern, name = rest, name[1:]
		case '\\':
			if len(pattern) > 1 {
				c = pattern[1]
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if name == "" || name[0] != c {
				return false
			}
			pattern, name = pattern[1:], name[1:]
		}
	}
	return name == ""
}

// matchBracket matches byte b against the bracket expression that opens
// pattern, returning the pattern after it; valid is false when the
// expression has no closing ']'.
func matchBracket(pattern string, b byte) (matched bool, rest string, valid bool) {
	i := 1
	negate := false
	if i < len(pattern) && (pattern[i] == '!' || pattern[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(pattern) {
		c := pattern[i]
		if c == ']' && !first {
			return matched != negate, pattern[i+1:], true
		}
		first = false
		if c == '\\' && i+1 < len(pattern) {
			i++
			c = pattern[i]
		}
		lo, hi := c, c
		if i+2 < len(pattern) && pattern[i+1] == '-' && pattern[i+2] != ']' {
			hi = pattern[i+2]
			i += 2
		}
		if lo <= b && b <= hi {
			matched = true
		}
		i++
	}
	return false, "", false
}

// aliasNormalize is kmod's alias_normalize: '-' becomes '_' except inside
// a bracket expression, where it may be a range. modprobe applies it to
// both the aliases (depmod does, writing modules.alias.bin) and the name it
// is asked for. An unbalanced bracket is an error.
func aliasNormalize(alias string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(alias); i++ {
		switch c := alias[i]; c {
		case '-':
			b.WriteByte('_')
		case ']':
			return "", fmt.Errorf("alias %q: unbalanced ']'", alias)
		case '[':
			j := strings.IndexByte(alias[i:], ']')
			if j < 0 {
				return "", fmt.Errorf("alias %q: unbalanced '['", alias)
			}
			b.WriteString(alias[i : i+j+1])
			i += j
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
