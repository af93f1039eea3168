package procinit

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// ProcSys is where the kernel's sysctls are.
const ProcSys = "/proc/sys"

// SysctlPath is the /proc/sys file of sysctl name ("net.ipv4.ip_forward"
// → /proc/sys/net/ipv4/ip_forward). The host refuses names that are not a
// path below /proc/sys; the guest checks again rather than trust it.
func SysctlPath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("sysctl %q: invalid name", name)
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return "", fmt.Errorf("sysctl %q: invalid name (empty component)", name)
		}
	}
	return path.Join(ProcSys, strings.ReplaceAll(name, ".", "/")), nil
}

// WriteSysctls writes the sysctls that only accepts (nil: all) with write,
// in name order.
func WriteSysctls(write func(path string, data []byte) error, sysctls map[string]string, only func(name string) bool) error {
	names := make([]string, 0, len(sysctls))
	for name := range sysctls {
		if only == nil || only(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		value := sysctls[name]
		p, err := SysctlPath(name)
		if err != nil {
			return err
		}
		if err := write(p, []byte(value)); err != nil {
			return fmt.Errorf("setting sysctl %q to %q: %w", name, value, err)
		}
	}
	return nil
}
