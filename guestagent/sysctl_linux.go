package guestagent

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// procSys is where the guest's sysctls are.
const procSys = "/proc/sys"

// sysctlPath is the /proc/sys file of sysctl name ("net.ipv4.ip_forward"
// → /proc/sys/net/ipv4/ip_forward). The host refuses names that are not a
// path below /proc/sys; the guest checks again rather than trust it.
func sysctlPath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("sysctl %q: invalid name", name)
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return "", fmt.Errorf("sysctl %q: invalid name (empty component)", name)
		}
	}
	return path.Join(procSys, strings.ReplaceAll(name, ".", "/")), nil
}

// applySysctls writes the spec's linux.sysctl ("Linux kernel parameters to
// modify at runtime for the container", config-linux.md) into the guest's
// kernel, in name order, before the container's first process exists. The
// guest's network, IPC and UTS namespaces are the container's (a pod's
// members share them, as they share the sandbox's under runc and CRI).
func (s *Service) applySysctls(sysctls map[string]string) error {
	names := make([]string, 0, len(sysctls))
	for name := range sysctls {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		value := sysctls[name]
		p, err := sysctlPath(name)
		if err != nil {
			return err
		}
		if err := s.sys.WriteFile(p, []byte(value)); err != nil {
			return fmt.Errorf("setting sysctl %q to %q: %w", name, value, err)
		}
	}
	return nil
}
