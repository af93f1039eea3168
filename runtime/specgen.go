package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/bundle"
)

// ErrSpecExists is WriteSpec's refusal to overwrite config.json, worded as
// runc's spec command words it. It matches fs.ErrExist with errors.Is.
var ErrSpecExists error = specExistsError{}

type specExistsError struct{}

func (specExistsError) Error() string {
	return "File " + bundle.ConfigName + " exists. Remove it first"
}
func (specExistsError) Is(target error) bool { return target == fs.ErrExist }

// DefaultSpec is the starter configuration of `initos-runtime spec`: runc's
// `runc spec` (libcontainer/specconv.Example) field by field. The
// capabilities (runc's three, in every set runc lists them in), masked and
// read-only paths and the device rule (deny all, to which the runtime adds
// the devices every container may use, as runc does) are runc's: the guest
// applies them to the container's process, its cgroup and the guest
// kernel's /proc and /sys.
//
// Values that differ: ociVersion is the version this runtime implements,
// and hostname is "initos". There is no rootless variant: the runtime needs
// root on the host and refuses user namespaces (bundle.Load).
func DefaultSpec() *specs.Spec {
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: true,
			User:     specs.User{},
			Args:     []string{"sh"},
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"TERM=xterm",
			},
			Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  append([]string(nil), runcDefaultCaps...),
				Effective: append([]string(nil), runcDefaultCaps...),
				Permitted: append([]string(nil), runcDefaultCaps...),
				Ambient:   append([]string(nil), runcDefaultCaps...),
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "initos",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
				Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
				Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue",
				Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs",
				Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
				Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	return s
}

// runcDefaultCaps are the capabilities of runc's starter spec.
var runcDefaultCaps = []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

// WriteSpec writes s as bundleDir/config.json (bundleDir "" is the working
// directory), tab-indented like runc's. It never overwrites: an existing
// config.json is ErrSpecExists, and a failed write leaves no file behind.
func WriteSpec(bundleDir string, s *specs.Spec) (err error) {
	if s == nil {
		return errors.New("writing the bundle's config.json: no spec")
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encoding the spec: %w", err)
	}
	path := filepath.Join(bundleDir, bundle.ConfigName)
	// O_EXCL: the check and the creation are one step, so a file created
	// meanwhile is not overwritten either. 0666 less the umask, as runc.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if errors.Is(err, fs.ErrExist) {
		return ErrSpecExists
	}
	if err != nil {
		return fmt.Errorf("creating %q: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing %q: %w", path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %q: %w", path, err)
	}
	return nil
}
