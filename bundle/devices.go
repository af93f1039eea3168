package bundle

import (
	"fmt"
	"path"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// validateDevices checks linux.devices (config-linux.md devices) and the
// device cgroup rules (linux.resources.devices).
func validateDevices(l *specs.Linux) error {
	if l == nil {
		return nil
	}
	for i, d := range l.Devices {
		// "path (string, REQUIRED) - full path to device inside container."
		if !path.IsAbs(d.Path) || path.Clean(d.Path) == "/" {
			return fmt.Errorf("linux.devices[%d]: path %q is not a full path in the container", i, d.Path)
		}
		switch d.Type {
		case "c", "b", "u":
			if d.Major < 0 || d.Minor < 0 || d.Major > 0xfff || d.Minor > 0xfffff {
				return fmt.Errorf("linux.devices[%d] (%s): major %d, minor %d out of range", i, d.Path, d.Major, d.Minor)
			}
		case "p":
		default:
			return fmt.Errorf("linux.devices[%d] (%s): type %q: want c, b, u or p", i, d.Path, d.Type)
		}
	}
	if l.Resources == nil {
		return nil
	}
	for i, r := range l.Resources.Devices {
		switch r.Type {
		case "", "a", "b", "c":
		default:
			return fmt.Errorf("linux.resources.devices[%d]: type %q: want a, b or c", i, r.Type)
		}
		for _, c := range r.Access {
			if c != 'r' && c != 'w' && c != 'm' {
				return fmt.Errorf("linux.resources.devices[%d]: access %q: want some of r, w, m", i, r.Access)
			}
		}
	}
	return nil
}
