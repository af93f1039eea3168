package guestagent

import (
	"strings"

	"golang.org/x/sys/unix"
)

// mountOpts is an OCI mount's option list split into what mount(2) takes.
type mountOpts struct {
	// Flags for the mount call, MS_BIND and MS_REC included.
	Flags uintptr
	// Propagation changes (MS_PRIVATE, MS_SHARED, ... maybe with MS_REC),
	// applied one by one after the mount.
	Propagation []uintptr
	// Data are the filesystem-specific options, in order.
	Data []string
	// CopyUp (runc's "tmpcopyup") copies what the destination held into a
	// fresh tmpfs.
	CopyUp bool
	// RecSet and RecClr are the MOUNT_ATTR_* of the recursive options
	// (rro, rnosuid, ...: mount_setattr(2) with AT_RECURSIVE on the mount
	// and every mount below it).
	RecSet, RecClr uint64
}

// Recursive reports whether the options hold recursive attributes.
func (o mountOpts) Recursive() bool { return o.RecSet|o.RecClr != 0 }

// DataString is Data as mount(2)'s data argument.
func (o mountOpts) DataString() string { return strings.Join(o.Data, ",") }

// Bind reports whether the options ask for a bind mount (bind or rbind).
func (o mountOpts) Bind() bool { return o.Flags&unix.MS_BIND != 0 }

// mountFlag sets or clears flag.
type mountFlag struct {
	clear bool
	flag  uintptr
}

// mountFlags are the options of mount(8) that are flags (runc's table).
var mountFlags = map[string]mountFlag{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

// propagationFlags are the mount propagation options.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// recursiveAttrs are the recursive mount options (runtime-spec config.md
// "Mounts": rro, rrw, rnosuid, ...; runc's table): MOUNT_ATTR_* set or
// cleared with mount_setattr(2) AT_RECURSIVE.
var recursiveAttrs = map[string]struct {
	clear bool
	attr  uint64
}{
	"rro":            {false, unix.MOUNT_ATTR_RDONLY},
	"rrw":            {true, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":        {false, unix.MOUNT_ATTR_NOSUID},
	"rsuid":          {true, unix.MOUNT_ATTR_NOSUID},
	"rnodev":         {false, unix.MOUNT_ATTR_NODEV},
	"rdev":           {true, unix.MOUNT_ATTR_NODEV},
	"rnoexec":        {false, unix.MOUNT_ATTR_NOEXEC},
	"rexec":          {true, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":    {false, unix.MOUNT_ATTR_NODIRATIME},
	"rdiratime":      {true, unix.MOUNT_ATTR_NODIRATIME},
	"rrelatime":      {false, unix.MOUNT_ATTR_RELATIME},
	"rnorelatime":    {true, unix.MOUNT_ATTR_RELATIME},
	"rnoatime":       {false, unix.MOUNT_ATTR_NOATIME},
	"ratime":         {true, unix.MOUNT_ATTR_NOATIME},
	"rstrictatime":   {false, unix.MOUNT_ATTR_STRICTATIME},
	"rnostrictatime": {true, unix.MOUNT_ATTR_STRICTATIME},
	"rnosymfollow":   {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rsymfollow":     {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// unsupportedMountOptions are options the runtime-spec or runc know that the
// agent does not implement; they fail rather than reach the kernel as data.
var unsupportedMountOptions = map[string]bool{
	"idmap": true, "ridmap": true,
}

// parseMountOptions turns an OCI mount's options into flags and data.
// Options that are neither flags nor propagation go to data unchanged
// (mode=, size=, newinstance, trans=virtio, ...).
func parseMountOptions(options []string) (mountOpts, error) {
	var o mountOpts
	for _, opt := range options {
		if opt == "" {
			continue
		}
		if f, ok := mountFlags[opt]; ok {
			if f.clear {
				o.Flags &^= f.flag
			} else {
				o.Flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[opt]; ok {
			o.Propagation = append(o.Propagation, p)
			continue
		}
		if r, ok := recursiveAttrs[opt]; ok {
			switch {
			case r.clear:
				o.RecClr |= r.attr
			default:
				o.RecSet |= r.attr
				if r.attr&unix.MOUNT_ATTR__ATIME == r.attr {
					// An access-time mode replaces the other ones
					// (MOUNT_ATTR_RELATIME is 0).
					o.RecClr |= unix.MOUNT_ATTR__ATIME
				}
			}
			continue
		}
		switch {
		case opt == "tmpcopyup":
			o.CopyUp = true
		case opt == "notmpcopyup":
			o.CopyUp = false
		case unsupportedMountOptions[opt]:
			return mountOpts{}, errorf(ErrNotSupported, "mount option %q is not supported", opt)
		default:
			o.Data = append(o.Data, opt)
		}
	}
	return o, nil
}

// hasData reports whether data holds key or key=....
func (o mountOpts) hasData(key string) bool {
	for _, d := range o.Data {
		if d == key || strings.HasPrefix(d, key+"=") {
			return true
		}
	}
	return false
}
