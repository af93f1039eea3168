package guestagent

import (
	"strings"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// applySysctls writes the spec's linux.sysctl ("Linux kernel parameters to
// modify at runtime for the container", config-linux.md) into the guest's
// kernel, in name order, before the container's first process exists: the
// guest's network namespace is the container's. Those of the IPC and UTS
// namespaces are written again by the first process's helper when the
// container has namespaces of its own (namespacedSysctls).
func (s *Service) applySysctls(sysctls map[string]string) error {
	return procinit.WriteSysctls(s.sys.WriteFile, sysctls, nil)
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
