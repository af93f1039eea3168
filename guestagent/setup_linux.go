package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// defaultDevice is one of the runtime-spec's default devices.
type defaultDevice struct {
	name         string
	major, minor uint32
}

// defaultDevices: config-linux.md "Default Devices": "In addition to any
// devices configured with this setting, the runtime MUST also supply:
// /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty".
var defaultDevices = []defaultDevice{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
	{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// devSymlinks: runtime-linux.md "Dev symbolic links": "runtimes MUST create
// the following symlinks if the source file exists after processing mounts".
var devSymlinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
	{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
}

// setupRoot mounts the root disk dev and the spec's mounts under rootfs
// and fixes up /dev. On failure everything it mounted is unmounted again.
// It returns the mount points in mount order. With procByProcess the
// container's first process mounts a /proc of its own over the spec's and
// masks the paths under it itself (mountsOwnProc).
func (s *Service) setupRoot(ctx context.Context, rootfs, dev, cgroupDir string, req *agentapi.SetupRequest, procByProcess bool) (mounted []string, err error) {
	defer func() {
		if err != nil {
			s.unmountAll(mounted)
			mounted = nil
		}
	}()
	var shared string // the root's directory in a mounted share
	if sh := req.RootShare; sh != nil {
		if shared, err = sharedRoot(sh, req.RootPath); err != nil {
			return nil, err
		}
	} else if dev == "" || req.RootFstype == "" {
		return nil, errorf(ErrInvalidArgument, "setup: root_share and root_path, or root_device (or root_serial) and root_fstype, are required")
	} else if err := waitDevice(ctx, s.sys.Stat, dev, s.cfg.DeviceWait); err != nil {
		return nil, err
	}
	if err := s.sys.MkdirAll(rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("creating %q: %w", rootfs, err)
	}
	// Mount read-write even for a read-only root: device nodes and mount
	// points are fixed up first, then the mount is made read-only (runc's
	// order). A device that cannot be written gets a read-only mount.
	rootRO := false
	if shared != "" {
		// The bundle's rootfs as the host shares it: what the container
		// writes lands in the engine's storage.
		if err := s.sys.Mount(shared, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, fmt.Errorf("binding the shared root %q on %q: %w", shared, rootfs, err)
		}
	} else if err := s.sys.Mount(dev, rootfs, req.RootFstype, 0, ""); err != nil {
		if !req.RootReadonly {
			return nil, fmt.Errorf("mounting %q (%s) on %q: %w", dev, req.RootFstype, rootfs, err)
		}
		if err2 := s.sys.Mount(dev, rootfs, req.RootFstype, unix.MS_RDONLY, ""); err2 != nil {
			return nil, fmt.Errorf("mounting %q (%s) read-only on %q: %w", dev, req.RootFstype, rootfs, err2)
		}
		rootRO = true
	}
	mounted = append(mounted, rootfs)

	devFromSpec := slices.ContainsFunc(req.Mounts, func(m *agentapi.Mount) bool { return path.Clean("/"+m.Destination) == "/dev" })
	if !devFromSpec {
		// No /dev in the spec: the rootfs's own /dev, with the default
		// devices made in it (runc's way). Never the guest's devtmpfs: it
		// holds the VM's disks and the agent's channel.
		if _, err := s.mountTarget(rootfs, "/dev", true); err != nil {
			return mounted, err
		}
	}

	devptsMounted := false
	for _, m := range req.Mounts {
		targets, err := s.mountOne(rootfs, cgroupDir, m)
		mounted = append(mounted, targets...)
		if err != nil {
			return mounted, err
		}
		if m.Type == "devpts" && path.Clean("/"+m.Destination) == "/dev/pts" {
			devptsMounted = true
		}
	}

	if a := req.RootAttrs; a != nil {
		// mkfs.btrfs --rootdir writes the root directory as 0755 0:0;
		// give it the bundle rootfs's owner and mode back.
		if err := s.sys.Lchown(rootfs, int(a.Uid), int(a.Gid)); err != nil {
			return mounted, fmt.Errorf("restoring the owner of %q: %w", rootfs, err)
		}
		if err := s.sys.Chmod(rootfs, a.Mode); err != nil {
			return mounted, fmt.Errorf("restoring the mode of %q: %w", rootfs, err)
		}
	}
	for _, d := range req.DeviceNodes {
		if err := s.makeDevice(rootfs, d); err != nil {
			return mounted, err
		}
	}
	if err := s.populateDev(rootfs, req.DeviceNodes, devptsMounted); err != nil {
		return mounted, err
	}

	if resolv := s.resolvConf(); resolv != "" && !slices.ContainsFunc(req.Mounts, func(m *agentapi.Mount) bool { return path.Clean("/"+m.Destination) == "/etc/resolv.conf" }) {
		// The DNS server of xip= or ConfigureNetwork (bridge mode): the
		// container's resolver.
		if err := s.sys.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
			return mounted, fmt.Errorf("creating /etc: %w", err)
		}
		target, err := procinit.ScopedJoin(s.sys, rootfs, "/etc/resolv.conf")
		if err != nil {
			return mounted, fmt.Errorf("/etc/resolv.conf: %w", err)
		}
		if err := s.sys.WriteFile(target, []byte(resolv)); err != nil {
			return mounted, fmt.Errorf("writing /etc/resolv.conf: %w", err)
		}
	}
	maskedPaths, readonlyPaths := req.MaskedPaths, req.ReadonlyPaths
	if procByProcess {
		// The /proc mounted above stays, where the spec's mounts are in
		// order ("The runtime MUST mount entries in the listed order"),
		// but the process's own covers it at once, and masks these
		// there (Config.Masked): made here too they would be hidden
		// (about 20 ms of a start under TCG, measured).
		maskedPaths, readonlyPaths = outside(maskedPaths, "/proc"), outside(readonlyPaths, "/proc")
	}
	masks, err := procinit.MaskPaths(s.sys, rootfs, maskedPaths, readonlyPaths, "")
	mounted = append(mounted, masks...)
	if err != nil {
		return mounted, err
	}
	if req.RootReadonly && !rootRO {
		// config.md root.readonly: "If true then the root filesystem MUST
		// be read-only inside the container".
		if err := s.sys.Mount("", rootfs, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return mounted, fmt.Errorf("making %q read-only: %w", rootfs, err)
		}
	}
	return mounted, nil
}

// outside are the paths of paths that are not dir or under it.
func outside(paths []string, dir string) []string {
	var out []string
	for _, p := range paths {
		if !procinit.Within(path.Clean("/"+p), dir) {
			out = append(out, p)
		}
	}
	return out
}

// waitDevice waits up to wait for a device node to appear (devtmpfs creates
// it shortly after the driver probes the disk).
func waitDevice(ctx context.Context, stat func(string) (fs.FileInfo, error), dev string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		_, err := stat(dev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("root device %q: %w", dev, err)
		}
		if time.Now().After(deadline) {
			return errorf(ErrNotFound, "root device %q did not appear within %v (is its module group loaded?)", dev, wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for root device %q: %w", dev, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// mountTarget resolves dest inside rootfs and creates it: a directory, or an
// empty file when dir is false.
func (s *Service) mountTarget(rootfs, dest string, dir bool) (string, error) {
	target, err := procinit.ScopedJoin(s.sys, rootfs, dest)
	if err != nil {
		return "", fmt.Errorf("mount destination %q: %w", dest, err)
	}
	if dir {
		if err := s.sys.MkdirAll(target, 0o755); err != nil {
			return "", fmt.Errorf("creating mount point %q: %w", dest, err)
		}
		return target, nil
	}
	if err := s.sys.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", fmt.Errorf("creating the directory of mount point %q: %w", dest, err)
	}
	if err := s.sys.CreateFile(target); err != nil {
		return "", fmt.Errorf("creating mount point %q: %w", dest, err)
	}
	return target, nil
}

// mountOne makes one of the spec's mounts; cgroupDir is the container's
// cgroup ("" when the guest has no cgroup v2). It returns what it mounted,
// also on error, so that the caller can undo it.
func (s *Service) mountOne(rootfs, cgroupDir string, m *agentapi.Mount) ([]string, error) {
	if m.Destination == "" {
		return nil, errorf(ErrInvalidArgument, "mount of %q: destination is empty", m.Source)
	}
	opts, err := parseMountOptions(m.Options)
	if err != nil {
		return nil, fmt.Errorf("mount %q: %w", m.Destination, err)
	}
	if m.Type == "bind" || opts.Bind() {
		return s.bindMount(rootfs, m, opts)
	}
	if m.Type == "" || m.Type == "none" {
		return nil, errorf(ErrInvalidArgument, "mount %q: no type and not a bind mount", m.Destination)
	}
	if m.Type == "proc" {
		// runc's checkProcMount: a proc goes where the spec says, never
		// where a symlink of the image leads (the first process mounts
		// its own over the spec's path; one elsewhere would show the
		// VM's processes, unmasked).
		dest := path.Clean("/" + m.Destination)
		resolved, err := procinit.ScopedJoin(s.sys, rootfs, dest)
		if err != nil {
			return nil, fmt.Errorf("mount destination %q: %w", m.Destination, err)
		}
		if resolved != filepath.Join(rootfs, dest) {
			return nil, errorf(ErrInvalidArgument, "mount %q: proc would go on %q, where a symlink of the root filesystem leads: refused",
				m.Destination, "/"+strings.TrimPrefix(strings.TrimPrefix(resolved, rootfs), "/"))
		}
	}
	target, err := s.mountTarget(rootfs, m.Destination, true)
	if err != nil {
		return nil, err
	}
	fstype, source := m.Type, m.Source
	switch m.Type {
	case "devpts":
		// A devpts of its own for the container, whose ptmx anyone may open.
		if !opts.hasData("newinstance") {
			opts.Data = append(opts.Data, "newinstance")
		}
		if !opts.hasData("ptmxmode") {
			opts.Data = append(opts.Data, "ptmxmode=0666")
		}
	case "cgroup", "cgroup2":
		if cgroupDir != "" {
			// The container's own cgroup, not the guest's whole
			// hierarchy (runc binds the container's cgroup directory when
			// there is no cgroup namespace: its limits read as under runc,
			// the agent's cgroups stay out of sight). With a cgroup
			// namespace the helper mounts cgroup2 again inside it.
			bind := &agentapi.Mount{Destination: m.Destination, Type: "bind", Source: cgroupDir, Options: m.Options}
			return s.bindMount(rootfs, bind, opts)
		}
		// The guest is cgroup v2 only; v1 options (controllers, name=)
		// mean nothing to cgroup2.
		fstype, source, opts.Data = "cgroup2", "cgroup2", nil
	}
	if source == "" {
		source = fstype
	}
	flags := opts.Flags &^ unix.MS_REMOUNT
	if key, ok := strings.CutPrefix(source, sharedShmPrefix); ok && fstype == "tmpfs" {
		if err := s.bindSharedShm(key, target, flags, opts.DataString()); err != nil {
			return nil, fmt.Errorf("mount %q: %w", m.Destination, err)
		}
	} else if opts.CopyUp && fstype == "tmpfs" {
		if err := s.copyUpTmpfs(source, target, flags, opts.DataString()); err != nil {
			return nil, fmt.Errorf("mounting tmpfs with copy-up on %q: %w", m.Destination, err)
		}
	} else if err := s.sys.Mount(source, target, fstype, flags, opts.DataString()); err != nil {
		return nil, fmt.Errorf("mounting %s %q on %q: %w", fstype, source, m.Destination, err)
	}
	if err := s.recursiveAttrs(target, opts); err != nil {
		return []string{target}, fmt.Errorf("mount %q: %w", m.Destination, err)
	}
	if err := s.propagate(target, opts); err != nil {
		return []string{target}, fmt.Errorf("mount %q: %w", m.Destination, err)
	}
	return []string{target}, nil
}

// A tmpfs whose source is sharedShmPrefix and a key is the VM's one tmpfs
// of that key, mounted once under sharedShmDir and bound into each
// container that names it: the host gives the same key to the binds of
// one host /dev/shm, which runc's containers of a pod share (podman's and
// containerd's pod members bind their sandbox's).
const (
	sharedShmPrefix = "initos-shm:"
	sharedShmDir    = "/run/initos/shm"
)

// bindSharedShm binds the VM's tmpfs of key on target, mounting it with
// flags and data first if it is not there yet.
func (s *Service) bindSharedShm(key, target string, flags uintptr, data string) error {
	if key == "" || len(key) > 64 || strings.Trim(key, "0123456789abcdef") != "" {
		return errorf(ErrInvalidArgument, "shared tmpfs key %q: want 1 to 64 lower-case hex digits", key)
	}
	dir := path.Join(sharedShmDir, key)
	s.shmMu.Lock()
	defer s.shmMu.Unlock()
	s.mu.Lock()
	mounted := slices.Contains(s.vmMounted, dir)
	s.mu.Unlock()
	if !mounted {
		if err := s.sys.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %q: %w", dir, err)
		}
		if err := s.sys.Mount("shm", dir, "tmpfs", flags, data); err != nil {
			return fmt.Errorf("mounting tmpfs on %q: %w", dir, err)
		}
		s.mu.Lock()
		s.vmMounted = append(s.vmMounted, dir)
		s.mu.Unlock()
	}
	if err := s.sys.Mount(dir, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding %q on %q: %w", dir, target, err)
	}
	return nil
}

// recursiveAttrs applies the recursive options (rro, rnosuid, ...) to the
// mount at target and every mount below it.
func (s *Service) recursiveAttrs(target string, opts mountOpts) error {
	if !opts.Recursive() {
		return nil
	}
	if err := s.sys.MountSetattr(target, true, opts.RecSet, opts.RecClr); err != nil {
		return fmt.Errorf("setting its recursive attributes: %w", err)
	}
	return nil
}

// sharedRoot is the directory of a container's root in the share sh,
// which Setup has mounted: rel must stay inside it.
func sharedRoot(sh *agentapi.Share, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if rel == "" || path.IsAbs(rel) || clean == "/" || clean[1:] != rel || !filepath.IsAbs(sh.MountPoint) {
		return "", errorf(ErrInvalidArgument, "setup: root_path %q must name a directory inside share %q (mounted at %q)", rel, sh.Tag, sh.MountPoint)
	}
	return filepath.Join(sh.MountPoint, rel), nil
}

// mountShare mounts the VM's shared directory (design section 6: 9p or
// virtiofs, at /z); the host has rewritten the sources of host bind mounts
// to paths under it.
func (s *Service) mountShare(sh *agentapi.Share) (string, error) {
	if sh.Tag == "" || !filepath.IsAbs(sh.MountPoint) || path.Clean(sh.MountPoint) != sh.MountPoint || sh.MountPoint == "/" {
		return "", errorf(ErrInvalidArgument, "share: tag %q and a clean absolute mount point other than / (%q) are required", sh.Tag, sh.MountPoint)
	}
	var data string
	switch sh.Fstype {
	case "9p":
		data = "trans=virtio,version=9p2000.L,msize=262144"
		if sh.Mmap {
			// Without a cache, 9p maps files read-only.
			data += ",cache=mmap"
		}
	case "virtiofs":
	default:
		return "", errorf(ErrInvalidArgument, "share: filesystem %q: want 9p or virtiofs", sh.Fstype)
	}
	if err := s.sys.MkdirAll(sh.MountPoint, 0o755); err != nil {
		return "", fmt.Errorf("creating %q: %w", sh.MountPoint, err)
	}
	wait := time.Duration(sh.WaitMillis) * time.Millisecond
	deadline := time.Now().Add(wait)
	for {
		err := s.sys.Mount(sh.Tag, sh.MountPoint, sh.Fstype, 0, data)
		if err == nil {
			return sh.MountPoint, nil
		}
		if wait == 0 || !tagUnknown(err) {
			return "", fmt.Errorf("mounting %s share %q on %q: %w", sh.Fstype, sh.Tag, sh.MountPoint, err)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("mounting %s share %q on %q: its device did not appear within %v: %w", sh.Fstype, sh.Tag, sh.MountPoint, wait, err)
		}
		time.Sleep(shareRetry)
	}
}

// shareRetry is how often a share whose device is being attached is
// mounted again.
const shareRetry = 5 * time.Millisecond

// tagUnknown reports whether a share's mount failed because no device has
// its tag (yet): 9p says ENOENT, virtiofs EINVAL ("tag not found").
func tagUnknown(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

// bindMount binds a path of the guest into the rootfs. Host paths need the
// shared directory, which the agent does not mount yet.
func (s *Service) bindMount(rootfs string, m *agentapi.Mount, opts mountOpts) ([]string, error) {
	if m.Source == "" || !filepath.IsAbs(m.Source) {
		return nil, errorf(ErrInvalidArgument, "bind mount %q: source %q is not an absolute path", m.Destination, m.Source)
	}
	st, err := s.sys.Stat(m.Source)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errorf(ErrNotSupported, "bind mount %q: source %q is not in the guest (host paths arrive through the shared directory)", m.Destination, m.Source)
	}
	if err != nil {
		return nil, fmt.Errorf("bind mount %q: source %q: %w", m.Destination, m.Source, err)
	}
	target, err := s.mountTarget(rootfs, m.Destination, st.IsDir())
	if err != nil {
		return nil, err
	}
	bindFlags := unix.MS_BIND | opts.Flags&unix.MS_REC
	if err := s.sys.Mount(m.Source, target, "", uintptr(bindFlags), ""); err != nil {
		return nil, fmt.Errorf("binding %q on %q: %w", m.Source, m.Destination, err)
	}
	mounted := []string{target}
	if bindFlags&unix.MS_REC != 0 {
		// The host's mounts below the source reach the guest as part of
		// the share's one filesystem: each gets a bind of its own, as
		// the host's rbind has, so that the remount below (a
		// non-recursive "ro") leaves them as they are.
		for _, rel := range m.Submounts {
			sub, err := s.bindSubmount(m, target, rel)
			if sub != "" {
				mounted = append(mounted, sub)
			}
			if err != nil {
				return mounted, err
			}
		}
	}
	// A bind ignores every other flag: they need a remount of the bind
	// (of the bind alone: runc's "ro" without "rro").
	if rest := opts.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
		if err := s.sys.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|rest, ""); err != nil {
			return mounted, fmt.Errorf("remounting bind %q with its options: %w", m.Destination, err)
		}
	}
	if err := s.recursiveAttrs(target, opts); err != nil {
		return mounted, fmt.Errorf("bind mount %q: %w", m.Destination, err)
	}
	if err := s.propagate(target, opts); err != nil {
		return mounted, fmt.Errorf("bind mount %q: %w", m.Destination, err)
	}
	return mounted, nil
}

// bindSubmount binds the submount rel of m's source (a path relative to
// it, from the host) on the same path under target, both resolved inside
// their trees. It returns the mount point once mounted.
func (s *Service) bindSubmount(m *agentapi.Mount, target, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if rel == "" || path.IsAbs(rel) || clean == "/" || clean[1:] != rel {
		return "", errorf(ErrInvalidArgument, "bind mount %q: submount %q: want a clean relative path", m.Destination, rel)
	}
	src, err := procinit.ScopedJoin(s.sys, m.Source, rel)
	if err != nil {
		return "", fmt.Errorf("bind mount %q: submount %q: %w", m.Destination, rel, err)
	}
	dst, err := procinit.ScopedJoin(s.sys, target, rel)
	if err != nil {
		return "", fmt.Errorf("bind mount %q: submount %q: %w", m.Destination, rel, err)
	}
	if err := s.sys.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("bind mount %q: binding its submount %q: %w", m.Destination, rel, err)
	}
	return dst, nil
}

// propagate applies the propagation options in order.
func (s *Service) propagate(target string, opts mountOpts) error {
	for _, p := range opts.Propagation {
		if err := s.sys.Mount("", target, "", p, ""); err != nil {
			return fmt.Errorf("setting propagation %#x: %w", p, err)
		}
	}
	return nil
}

// copyUpTmpfs mounts a tmpfs that starts with what target held: it is
// mounted aside, filled, and moved onto target.
func (s *Service) copyUpTmpfs(source, target string, flags uintptr, data string) (err error) {
	aside := filepath.Join(filepath.Dir(s.cfg.Rootfs), "copyup")
	if err := s.sys.MkdirAll(aside, 0o700); err != nil {
		return err
	}
	if err := s.sys.Mount(source, aside, "tmpfs", flags, data); err != nil {
		return err
	}
	moved := false
	defer func() {
		if !moved {
			_ = s.sys.Unmount(aside, unix.MNT_DETACH)
		}
	}()
	if err := s.sys.CopyTree(target, aside); err != nil {
		return err
	}
	if err := s.sys.Mount(aside, target, "", unix.MS_MOVE, ""); err != nil {
		return err
	}
	moved = true
	return nil
}

// makeDevice (re)creates one device node: mkfs.btrfs 6.2 writes device
// nodes as 0,0.
func (s *Service) makeDevice(rootfs string, d *agentapi.DeviceNode) error {
	var kind uint32
	switch d.Type {
	case "c", "u":
		kind = unix.S_IFCHR
	case "b":
		kind = unix.S_IFBLK
	case "p":
		kind = unix.S_IFIFO
	default:
		return errorf(ErrInvalidArgument, "device %q: type %q: want c, b, u or p", d.Path, d.Type)
	}
	if d.Mode&^0o7777 != 0 {
		return errorf(ErrInvalidArgument, "device %q: mode %#o has bits beyond permissions", d.Path, d.Mode)
	}
	target, err := procinit.ScopedJoin(s.sys, rootfs, d.Path)
	if err != nil {
		return fmt.Errorf("device %q: %w", d.Path, err)
	}
	if target == filepath.Clean(rootfs) {
		return errorf(ErrInvalidArgument, "device %q: not a file path", d.Path)
	}
	if err := s.sys.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("device %q: creating its directory: %w", d.Path, err)
	}
	if err := s.sys.Remove(target); err != nil {
		return fmt.Errorf("device %q: removing what is there: %w", d.Path, err)
	}
	if err := s.sys.Mknod(target, kind|d.Mode, unix.Mkdev(d.Major, d.Minor)); err != nil {
		return fmt.Errorf("device %q: %w", d.Path, err)
	}
	if err := s.sys.Lchown(target, int(d.Uid), int(d.Gid)); err != nil {
		return fmt.Errorf("device %q: chown %d:%d: %w", d.Path, d.Uid, d.Gid, err)
	}
	// After chown, which may clear setuid/setgid; mknod's mode is masked
	// by the umask.
	if err := s.sys.Chmod(target, d.Mode); err != nil {
		return fmt.Errorf("device %q: chmod %#o: %w", d.Path, d.Mode, err)
	}
	return nil
}

// populateDev completes a /dev the spec mounted itself (usually a tmpfs):
// the default devices the request did not name, the /dev/fd links and
// /dev/ptmx.
func (s *Service) populateDev(rootfs string, given []*agentapi.DeviceNode, devpts bool) error {
	dev, err := procinit.ScopedJoin(s.sys, rootfs, "/dev")
	if err != nil {
		return err
	}
	for _, d := range defaultDevices {
		p := "/dev/" + d.name
		if slices.ContainsFunc(given, func(g *agentapi.DeviceNode) bool { return path.Clean(g.Path) == p }) {
			continue
		}
		if _, err := s.sys.Lstat(filepath.Join(dev, d.name)); err == nil {
			continue
		}
		if err := s.makeDevice(rootfs, &agentapi.DeviceNode{Path: p, Type: "c", Major: d.major, Minor: d.minor, Mode: 0o666}); err != nil {
			return err
		}
	}
	for _, l := range devSymlinks {
		if _, err := s.sys.Lstat(filepath.Join(dev, l[1])); err == nil {
			continue
		}
		if err := s.sys.Symlink(l[0], filepath.Join(dev, l[1])); err != nil {
			return fmt.Errorf("linking /dev/%s to %s: %w", l[1], l[0], err)
		}
	}
	if devpts {
		// config-linux.md: /dev/ptmx, "A bind-mount or symlink of the
		// container's /dev/pts/ptmx".
		ptmx := filepath.Join(dev, "ptmx")
		if err := s.sys.Remove(ptmx); err != nil {
			return fmt.Errorf("replacing /dev/ptmx: %w", err)
		}
		if err := s.sys.Symlink("pts/ptmx", ptmx); err != nil {
			return fmt.Errorf("linking /dev/ptmx to pts/ptmx: %w", err)
		}
	}
	return nil
}

// unmountAll unmounts mount points in reverse order, lazily when busy.
// Failures are logged: this runs on the way out.
func (s *Service) unmountAll(mounted []string) {
	for i := len(mounted) - 1; i >= 0; i-- {
		if err := s.sys.Unmount(mounted[i], 0); err != nil {
			if err := s.sys.Unmount(mounted[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				s.log.Printf("unmounting %q: %v", mounted[i], err)
			}
		}
	}
}
