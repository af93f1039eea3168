package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// FeaturesVMMAnnotation lists the VMM drivers in Features' annotations.
const FeaturesVMMAnnotation = "io.github.initos-runtime.vmm"

// guestMountOptions are the mount options the guest agent recognizes
// (guestagent/mountopts_linux.go: its flag, propagation and recursive
// attribute tables and tmpcopyup/notmpcopyup), sorted. Options it refuses
// (idmap, ridmap) are not here; everything else it passes to mount(2) as
// data, which features.md keeps out of this list.
// TestFeaturesMountOptionsMatchAgent keeps the two in step.
//
// "rro" here is what containerd's CRI reads as "recursive read-only mounts
// supported" (RuntimeHandlerFeatures.RecursiveReadOnlyMounts): the agent
// makes a bind and every mount below it read-only (mount_setattr
// AT_RECURSIVE), and the host makes the share's entry so too.
// "rshared" is recognized, but a host path's bind refuses it (see
// checkPropagation): a VM's mounts cannot propagate to the host's.
var guestMountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
	"iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
	"noexec", "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime",
	"nosuid", "nosymfollow", "notmpcopyup", "private", "ratime", "rbind", "rdev",
	"rdiratime", "relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime",
	"rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro",
	"rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave", "rstrictatime",
	"rsuid", "rsymfollow", "runbindable", "rw", "shared", "silent", "slave",
	"strictatime", "suid", "symfollow", "sync", "tmpcopyup", "unbindable",
}

// Features is the runtime-spec Features structure (features.md) of this
// build. Per the spec it depends on the build, not on the host: whether this
// host has KVM or a kernel is `initos-runtime check`'s business.
//
// Claims, from what the guest agent and the bundle layer really do:
//   - every Linux namespace type is accepted: the VM is the isolation
//     boundary and the container shares the guest's namespaces;
//   - capabilities: nil ("unknown"): process.capabilities is accepted and
//     not applied, so no capability list is claimed;
//   - cgroup managers, seccomp, AppArmor, SELinux, Intel RDT, idmap mounts
//     and net devices: explicitly false (not implemented); linux.resources
//     memory and CPU size the VM instead of a cgroup.
func Features() *features.Features {
	no := func() *bool { b := false; return &b }
	return &features.Features{
		// "ociVersionMin (string, REQUIRED) ... The runtime MUST accept this
		// value as the ociVersion property of config.json." (features.md)
		// The bundle layer accepts every 1.x.y.
		OCIVersionMin: "1.0.0",
		// "The value MUST NOT be less than the value of the ociVersionMin
		// property." (features.md)
		OCIVersionMax: specs.Version,
		// "The runtime MUST support the elements in this array as the hooks
		// property of config.json." (features.md)
		Hooks:        append([]string(nil), hookStages...),
		MountOptions: append([]string(nil), guestMountOptions...),
		Linux: &features.Linux{
			Namespaces: []string{
				string(specs.CgroupNamespace), string(specs.IPCNamespace), string(specs.MountNamespace),
				string(specs.NetworkNamespace), string(specs.PIDNamespace), string(specs.TimeNamespace),
				string(specs.UserNamespace), string(specs.UTSNamespace),
			},
			Cgroup:          &features.Cgroup{V1: no(), V2: no(), Systemd: no(), SystemdUser: no(), Rdma: no()},
			Seccomp:         &features.Seccomp{Enabled: no()},
			Apparmor:        &features.Apparmor{Enabled: no()},
			Selinux:         &features.Selinux{Enabled: no()},
			IntelRdt:        &features.IntelRdt{Enabled: no()},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: no()}},
			NetDevices:      &features.NetDevices{Enabled: no()},
		},
		Annotations: map[string]string{
			FeaturesVMMAnnotation: "qemu,cloud-hypervisor",
		},
	}
}
