package network

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
)

// WriteHost maps name to ip in the hosts file at path (the format of
// /etc/hosts that dnsmasq reads with --addn-hosts: "IP NAME" lines),
// replacing any earlier address of name and keeping every other line. The
// file is rewritten atomically (temporary file and rename) under an
// exclusive flock of path+".lock"; dnsmasq rereads it on SIGHUP.
func WriteHost(path, name string, ip net.IP) error {
	if err := checkHostName(name); err != nil {
		return err
	}
	if ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("hosts file %q: address %v for %q: %w", path, ip, name, ErrInvalidArgument)
	}
	return editHosts(path, func(lines []string) []string {
		return append(dropName(lines, name), ip.String()+" "+name)
	})
}

// RemoveHost drops name from the hosts file at path; a missing name or file
// is not an error.
func RemoveHost(path, name string) error {
	if err := checkHostName(name); err != nil {
		return err
	}
	return editHosts(path, func(lines []string) []string { return dropName(lines, name) })
}

func editHosts(path string, edit func([]string) []string) error {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading hosts file %q: %w", path, err)
	}
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	lines = edit(lines)
	var out bytes.Buffer
	for _, l := range lines {
		out.WriteString(l + "\n")
	}
	if bytes.Equal(out.Bytes(), data) {
		return nil
	}
	if err := writeFileAtomic(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing hosts file %q: %w", path, err)
	}
	return nil
}

// dropName removes name from every "IP NAME..." line, and lines left
// without a name; comments and blank lines stay as they are.
func dropName(lines []string, name string) []string {
	out := lines[:0:0]
	for _, l := range lines {
		content, comment, _ := strings.Cut(l, "#")
		f := strings.Fields(content)
		if len(f) < 2 || !slices.ContainsFunc(f[1:], func(n string) bool { return strings.EqualFold(n, name) }) {
			out = append(out, l)
			continue
		}
		names := slices.DeleteFunc(f[1:], func(n string) bool { return strings.EqualFold(n, name) })
		if len(names) == 0 {
			continue
		}
		nl := f[0] + " " + strings.Join(names, " ")
		if comment != "" || strings.Contains(l, "#") {
			nl += " #" + comment
		}
		out = append(out, nl)
	}
	return out
}

// checkHostName accepts DNS names: labels of letters, digits, '-' and '_'
// joined by dots, at most 253 bytes.
func checkHostName(name string) error {
	bad := name == "" || len(name) > 253 || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..")
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("host name %q: %w: want letters, digits, '-', '_' and dots, at most 253 bytes", name, ErrInvalidArgument)
	}
	return nil
}
