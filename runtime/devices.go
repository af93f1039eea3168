package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// anyDevice is a rule's wildcard major or minor.
const anyDevice = agentapi.AnyDevice

// specDevices are spec s's linux.devices as the agent makes them in the
// container's /dev (config-linux.md devices: "the runtime MUST make the
// devices available"): nodes of the guest's devices with those numbers
// (fileMode 0666 and owner 0:0 when unset).
func specDevices(s *specs.Spec) []*agentapi.DeviceNode {
	if s.Linux == nil {
		return nil
	}
	var out []*agentapi.DeviceNode
	for _, d := range s.Linux.Devices {
		n := &agentapi.DeviceNode{Path: d.Path, Type: d.Type, Major: uint32(d.Major), Minor: uint32(d.Minor), Mode: 0o666}
		if d.FileMode != nil {
			n.Mode = uint32(d.FileMode.Perm())
		}
		if d.UID != nil {
			n.Uid = *d.UID
		}
		if d.GID != nil {
			n.Gid = *d.GID
		}
		out = append(out, n)
	}
	return out
}

// deviceRules are the device cgroup rules of spec s for the guest (config-
// linux.md "Allowed Device list"): its linux.resources.devices, then
// agentapi.AlwaysAllowedDevices; nil (no filter) when it has none, as the VM is the
// boundary for a bundle that asks for nothing (`initos-runtime spec`'s).
// bundle.Load has checked the types and the access strings.
func deviceRules(s *specs.Spec) []*agentapi.DeviceRule {
	if s.Linux == nil || s.Linux.Resources == nil || len(s.Linux.Resources.Devices) == 0 {
		return nil
	}
	var out []*agentapi.DeviceRule
	for _, d := range s.Linux.Resources.Devices {
		r := &agentapi.DeviceRule{Allow: d.Allow, Type: d.Type, Major: anyDevice, Minor: anyDevice, Access: d.Access}
		if r.Type == "" {
			r.Type = "a" // "type (string, OPTIONAL) ... Unset values mean "all""
		}
		if r.Access == "" {
			r.Access = "rwm"
		}
		if d.Major != nil {
			r.Major = *d.Major
		}
		if d.Minor != nil {
			r.Minor = *d.Minor
		}
		out = append(out, r)
	}
	return append(out, agentapi.AlwaysAllowedDevices()...)
}
