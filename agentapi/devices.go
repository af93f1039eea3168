package agentapi

// AnyDevice is a DeviceRule's wildcard major or minor.
const AnyDevice = -1

// AlwaysAllowedDevices are the devices every container may use whatever
// its spec's rules say, appended after them as runc does: making any device
// node (its permissions decide who opens it), config-linux.md's "Default
// Devices" (/dev/null, zero, full, random, urandom, tty), /dev/console, and
// the container's ptys (/dev/ptmx, /dev/pts/*). A new slice each call.
func AlwaysAllowedDevices() []*DeviceRule {
	return []*DeviceRule{
		{Allow: true, Type: "c", Major: AnyDevice, Minor: AnyDevice, Access: "m"},
		{Allow: true, Type: "b", Major: AnyDevice, Minor: AnyDevice, Access: "m"},
		{Allow: true, Type: "c", Major: 1, Minor: 3, Access: "rwm"},           // null
		{Allow: true, Type: "c", Major: 1, Minor: 5, Access: "rwm"},           // zero
		{Allow: true, Type: "c", Major: 1, Minor: 7, Access: "rwm"},           // full
		{Allow: true, Type: "c", Major: 1, Minor: 8, Access: "rwm"},           // random
		{Allow: true, Type: "c", Major: 1, Minor: 9, Access: "rwm"},           // urandom
		{Allow: true, Type: "c", Major: 5, Minor: 0, Access: "rwm"},           // tty
		{Allow: true, Type: "c", Major: 5, Minor: 1, Access: "rwm"},           // console
		{Allow: true, Type: "c", Major: 5, Minor: 2, Access: "rwm"},           // ptmx
		{Allow: true, Type: "c", Major: 136, Minor: AnyDevice, Access: "rwm"}, // pts
	}
}

// CommonDeviceRules are the device rules of a container whose spec denies
// every device and allows nothing more (podman's, containerd's and
// nerdctl's default): that denial, then AlwaysAllowedDevices. A template's
// agent loads their device program before the template is saved, and each
// clone with these rules attaches it. A new slice each call.
func CommonDeviceRules() []*DeviceRule {
	return append([]*DeviceRule{{Allow: false, Type: "a", Major: AnyDevice, Minor: AnyDevice, Access: "rwm"}}, AlwaysAllowedDevices()...)
}
