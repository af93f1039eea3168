package guestagent

import (
	"fmt"
	"strings"

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
