package bundle

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ipcSysctls are the IPC namespace's sysctls outside fs.mqueue. (runc's
// list).
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// validateSysctls checks linux.sysctl: "Linux kernel parameters to modify
// at runtime for the container" (config-linux.md, sysctl). The spec lets a
// runtime choose which it allows; this runtime makes runc's choice
// (libcontainer/configs/validate, sysctl): only sysctls of a namespace the
// container has of its own, so a bundle that runc refuses at create is
// refused here too, with runc's reasons. In the VM the whole guest kernel is
// the container's, but what the bundle asks for keeps its meaning under
// either runtime.
func validateSysctls(spec *specs.Spec) error {
	if spec.Linux == nil || len(spec.Linux.Sysctl) == 0 {
		return nil
	}
	has := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range spec.Linux.Namespaces {
		has[ns.Type] = true
	}
	names := make([]string, 0, len(spec.Linux.Sysctl))
	for name := range spec.Linux.Sysctl {
		names = append(names, name)
	}
	sort.Strings(names) // the same error for the same bundle
	for _, name := range names {
		if err := checkSysctl(name, has); err != nil {
			return fmt.Errorf("linux.sysctl: %w", err)
		}
	}
	return nil
}

// checkSysctl is runc's rule for one sysctl, given the namespace types the
// spec asks for, plus a check of the name as a /proc/sys path.
func checkSysctl(name string, has map[specs.LinuxNamespaceType]bool) error {
	// The name becomes /proc/sys/<name with . replaced by />: it must
	// not leave /proc/sys or name a directory.
	if name == "" {
		return errors.New("empty sysctl name")
	}
	if strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("sysctl %q: the name must not contain '/' (it becomes a /proc/sys path)", name)
	}
	for _, part := range strings.Split(name, ".") {
		if part == "" {
			return fmt.Errorf("sysctl %q: the name has an empty component (it becomes a /proc/sys path)", name)
		}
	}
	switch {
	case ipcSysctls[name] || strings.HasPrefix(name, "fs.mqueue."):
		if !has[specs.IPCNamespace] {
			return fmt.Errorf("sysctl %q is not allowed in the host's ipc namespace (the spec has no ipc namespace)", name)
		}
		return nil
	case strings.HasPrefix(name, "net."):
		// runc also refuses a network namespace path that is the host's
		// own; here a path names the engine's namespace, which the VM is
		// attached to: the guest's network stack is the container's.
		if !has[specs.NetworkNamespace] {
			return fmt.Errorf("sysctl %q is not allowed in the host's network namespace (the spec has no network namespace)", name)
		}
		return nil
	case name == "kernel.domainname" && has[specs.UTSNamespace]:
		return nil
	case name == "kernel.hostname" && has[specs.UTSNamespace]:
		// runc: namespaced, but the spec's hostname field sets it.
		return fmt.Errorf("sysctl %q is not allowed as it conflicts with the OCI \"hostname\" field", name)
	}
	return fmt.Errorf("sysctl %q is not in a separate kernel namespace", name)
}
