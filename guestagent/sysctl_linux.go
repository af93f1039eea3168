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
// kernel, in name order, before the container's first process exists: the
// guest's network namespace is the container's. Those of the IPC and UTS
// namespaces are written again by the first process's helper when the
// container has namespaces of its own (namespacedSysctls).
func (s *Service) applySysctls(sysctls map[string]string) error {
	return writeSysctls(s.sys.WriteFile, sysctls, nil)
}

// writeSysctls writes the sysctls that only accepts (nil: all) with write,
// in name order.
func writeSysctls(write func(path string, data []byte) error, sysctls map[string]string, only func(name string) bool) error {
	names := make([]string, 0, len(sysctls))
	for name := range sysctls {
		if only == nil || only(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		value := sysctls[name]
		p, err := sysctlPath(name)
		if err != nil {
			return err
		}
		if err := write(p, []byte(value)); err != nil {
			return fmt.Errorf("setting sysctl %q to %q: %w", name, value, err)
		}
	}
	return nil
}

// namespacedSysctls tells which sysctls belong to the IPC namespace (when
// ipc) and to the UTS namespace (when uts): runc's rule.
func namespacedSysctls(ipc, uts bool) func(name string) bool {
	return func(name string) bool {
		switch {
		case ipc && (name == "kernel.msgmax" || name == "kernel.msgmnb" || name == "kernel.msgmni" ||
			name == "kernel.sem" || name == "kernel.shmall" || name == "kernel.shmmax" ||
			name == "kernel.shmmni" || name == "kernel.shm_rmid_forced" || strings.HasPrefix(name, "fs.mqueue.")):
			return true
		case uts && name == "kernel.domainname":
			return true
		}
		return false
	}
}
