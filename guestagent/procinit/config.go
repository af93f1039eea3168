package procinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Config is what the agent sends the helper on fd 3, in the binary form
// of MarshalBinary: the helper decodes it with a few loops instead of
// encoding/json, whose analysis of the types a helper, a new process each
// time, would build afresh for every exec (under TCG that analysis and the
// decode took 11-28 ms of each podman exec; docs/boot-budget.md).
type Config struct {
	Process Process
	// Rootfs is the directory to chroot into, or with Pivot (the helper is
	// in a mount namespace of its own) to pivot_root to; "" when it is
	// already the helper's root (a joined mount namespace).
	Rootfs string
	Pivot  bool
	// RootPropagation is applied to the new root after the pivot
	// (config-linux.md rootfsPropagation); 0 leaves it private.
	RootPropagation uint64
	// Ctty makes stdin the controlling terminal of the new session.
	Ctty bool
	// TryCtty does the same where it can (the console of sidecar mode).
	TryCtty bool
	// Console, when set, is the container's /dev/console (under Rootfs):
	// its terminal (stdin) is bound there before the pivot, as runc does
	// for a container's first process with a terminal.
	Console string
	// MountProc, when set, gets a new proc mount before the chroot: the
	// helper is PID 1 of a new PID namespace (or the first process of a
	// container that joined another's, in a mount namespace of its own)
	// and the container's /proc must show that namespace.
	MountProc string
	// ProcMounts are the mount points Setup made below MountProc (the
	// spec's mounts under /proc, lxcfs's /proc/meminfo say), in mount
	// order: the new proc mount would cover them, so they are kept
	// across it.
	ProcMounts []string
	// Masked and Readonly are the spec's paths; those under /proc are
	// applied again on the new proc mount.
	Masked   []string
	Readonly []string
	// Hostname is set in the helper's new UTS namespace, and Sysctls (of
	// its new IPC and UTS namespaces) are written there.
	Hostname string
	Sysctls  map[string]string
	// NewCgroupns: the helper, already in the container's cgroup, makes a
	// cgroup namespace rooted there and mounts cgroup2 again on
	// CgroupMount (a path under Rootfs; "" for none) inside it.
	NewCgroupns    bool
	CgroupMount    string
	CgroupReadonly bool
	// Seccomp is the BPF program (sock_filter array) installed with
	// SeccompFlags before the exec.
	Seccomp      []byte
	SeccompFlags uint32
	// UnshareMount: the helper makes its mount namespace itself, first
	// (a spare, started in the agent's before the container's mounts
	// were there); a helper started for its process has it from clone.
	UnshareMount bool
}

// Process is the spec's process (config.md "process") as the helper
// applies it: the agent has resolved the capability names to masks of the
// kernel's capabilities and the rlimit names to resources (ProcessOf).
type Process struct {
	Args []string
	Env  []string
	Cwd  string
	// UID, GID and AdditionalGids are the spec's user; Umask is nil when
	// the spec leaves the umask as it is.
	UID, GID       uint32
	AdditionalGids []uint32
	Umask          *uint32
	// Caps are the five sets; LastCap is the kernel's highest capability
	// (the bounding set is dropped up to it).
	Caps    CapSets
	LastCap int
	Rlimits []Rlimit
	// OOMScoreAdj is nil when the spec has none.
	OOMScoreAdj     *int
	NoNewPrivileges bool
}

// Rlimit is one of the spec's rlimits with its getrlimit(2) resource.
type Rlimit struct {
	Type       string
	Resource   int
	Soft, Hard uint64
}

// CapMask is a set of capabilities, bit n for capability n.
type CapMask uint64

// CapSets are the spec's five sets as masks of the capabilities this
// kernel has.
type CapSets struct {
	Bounding, Effective, Permitted, Inheritable, Ambient CapMask
}

// configVersion is the first byte of an encoded Config: agent and helper
// come from one initrd, so a mismatch is a build error, named as one.
const configVersion = 2

// maxConfigSize bounds what the helper reads: the spec's strings and the
// largest seccomp program with room to spare.
const maxConfigSize = 16 << 20

// errTruncated: the encoding ended inside a field.
var errTruncated = errors.New("truncated")

// MarshalBinary encodes c: a version byte, then each field in the order
// of the struct, unsigned integers as uvarints, signed ones as varints,
// strings and byte slices with their length first, lists with their count
// first, optional values after a presence byte, the sysctls sorted by name.
func (c *Config) MarshalBinary() ([]byte, error) {
	e := encoder{b: make([]byte, 0, 512)}
	e.u(configVersion)
	p := &c.Process
	e.strs(p.Args)
	e.strs(p.Env)
	e.str(p.Cwd)
	e.u(uint64(p.UID))
	e.u(uint64(p.GID))
	e.u(uint64(len(p.AdditionalGids)))
	for _, g := range p.AdditionalGids {
		e.u(uint64(g))
	}
	e.flag(p.Umask != nil)
	if p.Umask != nil {
		e.u(uint64(*p.Umask))
	}
	for _, m := range []CapMask{p.Caps.Bounding, p.Caps.Effective, p.Caps.Permitted, p.Caps.Inheritable, p.Caps.Ambient} {
		e.u(uint64(m))
	}
	e.i(int64(p.LastCap))
	e.u(uint64(len(p.Rlimits)))
	for _, r := range p.Rlimits {
		e.str(r.Type)
		e.i(int64(r.Resource))
		e.u(r.Soft)
		e.u(r.Hard)
	}
	e.flag(p.OOMScoreAdj != nil)
	if p.OOMScoreAdj != nil {
		e.i(int64(*p.OOMScoreAdj))
	}
	e.flag(p.NoNewPrivileges)

	e.str(c.Rootfs)
	e.flag(c.Pivot)
	e.u(c.RootPropagation)
	e.flag(c.Ctty)
	e.flag(c.TryCtty)
	e.str(c.Console)
	e.str(c.MountProc)
	e.strs(c.ProcMounts)
	e.strs(c.Masked)
	e.strs(c.Readonly)
	e.str(c.Hostname)
	names := make([]string, 0, len(c.Sysctls))
	for n := range c.Sysctls {
		names = append(names, n)
	}
	slices.Sort(names)
	e.u(uint64(len(names)))
	for _, n := range names {
		e.str(n)
		e.str(c.Sysctls[n])
	}
	e.flag(c.NewCgroupns)
	e.str(c.CgroupMount)
	e.flag(c.CgroupReadonly)
	e.str(string(c.Seccomp))
	e.u(uint64(c.SeccompFlags))
	e.flag(c.UnshareMount)
	if len(e.b) > maxConfigSize {
		return nil, fmt.Errorf("encoding the process configuration: %d bytes, more than %d", len(e.b), maxConfigSize)
	}
	return e.b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded into c, which it
// overwrites; it fails, naming the field, on a version it does not know,
// a truncated or oversized field, or bytes left over.
func (c *Config) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if v := d.u("version"); d.err == nil && v != configVersion {
		return fmt.Errorf("decoding the process configuration: version %d, want %d (agent and helper from different builds)", v, configVersion)
	}
	*c = Config{}
	p := &c.Process
	p.Args = d.strs("args")
	p.Env = d.strs("env")
	p.Cwd = d.str("cwd")
	p.UID = d.u32("uid")
	p.GID = d.u32("gid")
	if n := d.count("additionalGids", 1); n > 0 {
		p.AdditionalGids = make([]uint32, n)
		for i := range p.AdditionalGids {
			p.AdditionalGids[i] = d.u32("additionalGids")
		}
	}
	if d.flag("umask") {
		u := d.u32("umask")
		p.Umask = &u
	}
	for _, m := range []*CapMask{&p.Caps.Bounding, &p.Caps.Effective, &p.Caps.Permitted, &p.Caps.Inheritable, &p.Caps.Ambient} {
		*m = CapMask(d.u("capabilities"))
	}
	p.LastCap = d.int("lastCap")
	if n := d.count("rlimits", 4); n > 0 {
		p.Rlimits = make([]Rlimit, n)
		for i := range p.Rlimits {
			r := &p.Rlimits[i]
			r.Type = d.str("rlimits")
			r.Resource = d.int("rlimits")
			r.Soft = d.u("rlimits")
			r.Hard = d.u("rlimits")
		}
	}
	if d.flag("oomScoreAdj") {
		adj := d.int("oomScoreAdj")
		p.OOMScoreAdj = &adj
	}
	p.NoNewPrivileges = d.flag("noNewPrivileges")

	c.Rootfs = d.str("rootfs")
	c.Pivot = d.flag("pivot")
	c.RootPropagation = d.u("rootPropagation")
	c.Ctty = d.flag("ctty")
	c.TryCtty = d.flag("tryCtty")
	c.Console = d.str("console")
	c.MountProc = d.str("mountProc")
	c.ProcMounts = d.strs("procMounts")
	c.Masked = d.strs("masked")
	c.Readonly = d.strs("readonly")
	c.Hostname = d.str("hostname")
	if n := d.count("sysctls", 2); n > 0 {
		c.Sysctls = make(map[string]string, n)
		for range n {
			name := d.str("sysctls")
			c.Sysctls[name] = d.str("sysctls")
		}
	}
	c.NewCgroupns = d.flag("newCgroupns")
	c.CgroupMount = d.str("cgroupMount")
	c.CgroupReadonly = d.flag("cgroupReadonly")
	if s := d.str("seccomp"); s != "" {
		c.Seccomp = []byte(s)
	}
	c.SeccompFlags = d.u32("seccompFlags")
	c.UnshareMount = d.flag("unshareMount")
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the last field", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("decoding the process configuration: %w", d.err)
	}
	return nil
}

// encoder appends fields to b.
type encoder struct{ b []byte }

func (e *encoder) u(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) i(v int64)  { e.b = binary.AppendVarint(e.b, v) }

func (e *encoder) flag(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) str(s string) {
	e.u(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) strs(ss []string) {
	e.u(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// decoder takes fields from the front of b; after the first error every
// read returns a zero value and err keeps that error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %w", field, err)
	}
}

func (d *decoder) u(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(field, errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int(field string) int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || int64(int(v)) != v {
		d.fail(field, errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) u32(field string) uint32 {
	v := d.u(field)
	if v > 1<<32-1 {
		d.fail(field, fmt.Errorf("%d does not fit 32 bits", v))
		return 0
	}
	return uint32(v)
}

func (d *decoder) flag(field string) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 {
		d.fail(field, errTruncated)
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail(field, fmt.Errorf("flag byte %d", v))
		return false
	}
	return v == 1
}

// count reads a length or a count whose items take at least min bytes
// each: one larger than the bytes left is an error, not an allocation.
func (d *decoder) count(field string, min int) int {
	n := d.u(field)
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail(field, fmt.Errorf("%d items in %d bytes: %w", n, len(d.b), errTruncated))
		return 0
	}
	return int(n)
}

func (d *decoder) str(field string) string {
	n := d.count(field, 1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strs(field string) []string {
	n := d.count(field, 1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str(field)
	}
	return ss
}
