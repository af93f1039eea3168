package guestagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/opencontainers/cgroups"
	// Sets cgroups.DevicesSetV2: the device program of a cgroup v2.
	_ "github.com/opencontainers/cgroups/devices"
	devconfig "github.com/opencontainers/cgroups/devices/config"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// setCgroupDevices attaches a device program allowing rules (in order, the
// last match wins, as in cgroup v1's device controller) to the cgroup v2
// directory dir, replacing the one it had.
func setCgroupDevices(dir string, rules []*devconfig.Rule) error {
	return cgroups.DevicesSetV2(dir, &cgroups.Resources{Devices: rules})
}

// maxDevicePrograms bounds the device programs a VM keeps loaded for
// reuse (devicePrograms).
const maxDevicePrograms = 4

// devicePrograms sets cgroups' device programs, keeping the programs it
// loaded by their rules: a cgroup with the same rules as one before gets
// the loaded program attached instead of a new one compiled, verified and
// loaded (35-56 ms of a clone's start under TCG, measured). A template's
// agent loads agentapi.CommonDeviceRules' program before it is saved
// (preload), so each clone with the engines' default rules attaches it.
type devicePrograms struct {
	// load builds, loads and attaches the program of rules to the cgroup
	// directory dir, replacing the one it had (setCgroupDevices).
	load  func(dir string, rules []*devconfig.Rule) error
	mu    sync.Mutex
	progs map[string]deviceProgram // by rulesKey
}

// deviceProgram is a loaded program kept open.
type deviceProgram struct {
	fd int
	id uint32
}

func newDevicePrograms(load func(string, []*devconfig.Rule) error) *devicePrograms {
	return &devicePrograms{load: load, progs: map[string]deviceProgram{}}
}

// rulesKey names rules, in order.
func rulesKey(rules []*devconfig.Rule) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "%t %c %d:%d %s\n", r.Allow, r.Type, r.Major, r.Minor, r.Permissions)
	}
	return b.String()
}

// set gives the cgroup directory dir the device program of rules.
func (d *devicePrograms) set(dir string, rules []*devconfig.Rule) error {
	key := rulesKey(rules)
	d.mu.Lock()
	p, ok := d.progs[key]
	room := len(d.progs) < maxDevicePrograms
	d.mu.Unlock()
	if ok {
		done, err := attachKept(dir, p)
		if err != nil || done {
			return err
		}
	}
	if err := d.load(dir, rules); err != nil {
		return err
	}
	if !ok && room {
		// Kept for the next cgroup with these rules; one that cannot be
		// kept is only loaded again then.
		if p, err := keepAttached(dir); err == nil {
			d.mu.Lock()
			if _, dup := d.progs[key]; dup || len(d.progs) >= maxDevicePrograms {
				unix.Close(p.fd)
			} else {
				d.progs[key] = p
			}
			d.mu.Unlock()
		}
	}
	return nil
}

// preload loads the program of rules and keeps it, through a cgroup of
// its own under root that is removed again.
func (d *devicePrograms) preload(root string, rules []*devconfig.Rule) error {
	dir := filepath.Join(root, "initos-devices")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("preloading a device program: %w", err)
	}
	err := d.set(dir, rules)
	if rerr := os.Remove(dir); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("preloading a device program: %w", err)
	}
	return nil
}

// attachKept attaches the kept program p to dir, unless dir has it
// already; done is false when dir has other programs, which the caller's
// load replaces.
func attachKept(dir string, p deviceProgram) (done bool, err error) {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("opening the cgroup %s: %w", dir, err)
	}
	defer unix.Close(fd)
	ids, err := bpfDeviceProgIDs(fd)
	switch {
	case err != nil:
		return false, fmt.Errorf("listing the device programs of %s: %w", dir, err)
	case len(ids) == 1 && ids[0] == p.id:
		return true, nil
	case len(ids) > 0:
		return false, nil
	}
	if err := bpfAttachDeviceProg(fd, p.fd); err != nil {
		return false, fmt.Errorf("attaching a device program to %s: %w", dir, err)
	}
	return true, nil
}

// keepAttached opens the one device program attached to dir.
func keepAttached(dir string) (deviceProgram, error) {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return deviceProgram{}, err
	}
	defer unix.Close(fd)
	ids, err := bpfDeviceProgIDs(fd)
	if err != nil {
		return deviceProgram{}, err
	}
	if len(ids) != 1 {
		return deviceProgram{}, fmt.Errorf("%s has %d device programs, want 1", dir, len(ids))
	}
	pfd, err := bpfProgFd(ids[0])
	if err != nil {
		return deviceProgram{}, err
	}
	return deviceProgram{fd: pfd, id: ids[0]}, nil
}

// deviceRules turns the host's rules into the device controller's.
func deviceRules(rules []*agentapi.DeviceRule) ([]*devconfig.Rule, error) {
	out := make([]*devconfig.Rule, 0, len(rules))
	for i, r := range rules {
		t := devconfig.Type(0)
		switch r.Type {
		case "a":
			t = devconfig.WildcardDevice
		case "b":
			t = devconfig.BlockDevice
		case "c":
			t = devconfig.CharDevice
		default:
			return nil, errorf(ErrInvalidArgument, "device rule %d: type %q: want a, b or c", i, r.Type)
		}
		if r.Access == "" || strings.Trim(r.Access, "rwm") != "" {
			return nil, errorf(ErrInvalidArgument, "device rule %d: access %q: want some of r, w, m", i, r.Access)
		}
		if r.Major < devconfig.Wildcard || r.Minor < devconfig.Wildcard {
			return nil, errorf(ErrInvalidArgument, "device rule %d: major %d, minor %d: want a number or -1 (any)", i, r.Major, r.Minor)
		}
		out = append(out, &devconfig.Rule{Type: t, Major: r.Major, Minor: r.Minor, Permissions: devconfig.Permissions(r.Access), Allow: r.Allow})
	}
	return out, nil
}

// preloadDevices loads the device program of agentapi.CommonDeviceRules
// and keeps it (a template's agent, before it is saved).
func (s *Service) preloadDevices() error {
	if !s.cgroups {
		return nil
	}
	rules, err := deviceRules(agentapi.CommonDeviceRules())
	if err != nil {
		return err
	}
	return s.devices.preload(cgroupRoot, rules)
}

// applyDeviceRules enforces container cid's device rules on its cgroup
// (config-linux.md "Allowed Device list"); no rules, no filter.
func (s *Service) applyDeviceRules(cid string, rules []*agentapi.DeviceRule) error {
	if len(rules) == 0 {
		return nil
	}
	conv, err := deviceRules(rules)
	if err != nil {
		return fmt.Errorf("setup of container %q: %w", cid, err)
	}
	if !s.cgroups {
		return errorf(ErrNotSupported, "device rules of container %q: the guest has no cgroup v2", cid)
	}
	if err := s.setDevices(cgroupOf(cid), conv); err != nil {
		return fmt.Errorf("device rules of container %q: %w", cid, err)
	}
	return nil
}
