package guestagent

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// guestContainer is one container of the VM: its root, its mounts and
// its first process.
type guestContainer struct {
	id      string
	rootfs  string
	mounted []string // in mount order
	mainID  string   // its first process
	// ownPidns: its processes live in a PID namespace of their own, whose
	// link target ("pid:[inode]") pidns is once the first one runs. With
	// "pid" in joinNs they live in the default container's (a pod's shared
	// PID namespace), which pidns names once the first one runs.
	ownPidns bool
	pidns    string
	// newNs are the other namespaces of its own (uts, ipc), joinNs those
	// it shares with the default container (uts, ipc, pid); hostname is
	// its UTS's.
	newNs, joinNs []string
	hostname      string
	// sysctls are the spec's, written again in its new IPC and UTS
	// namespaces.
	sysctls map[string]string
	// seccomp is the BPF program every one of its processes installs
	// before its exec, with seccompFlags.
	seccomp      []byte
	seccompFlags uint32
	// cgroupMount is where its spec mounts cgroup (under rootfs; ""),
	// mounted again in its own cgroup namespace.
	cgroupMount    string
	cgroupReadonly bool
	// rootPropagation is the propagation of its root mount in its own
	// mount namespace (0: private).
	rootPropagation uintptr
	// masked and readonly are the spec's paths, applied again under the
	// /proc a PID namespace of its own gets.
	masked, readonly []string
}

// rootfsOf is where container id's root is mounted: the default
// container's at cfg.Rootfs, a pod member's under /run/initos/c/<id>.
func (s *Service) rootfsOf(id string) string {
	if id == "" {
		return s.cfg.Rootfs
	}
	return filepath.Join(filepath.Dir(s.cfg.Rootfs), "c", id, "rootfs")
}

// checkContainerID refuses ids that are no single path element.
func checkContainerID(id string) error {
	if id == "" {
		return nil
	}
	if id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || len(id) > 128 {
		return errorf(ErrInvalidArgument, "container id %q: want a name of at most 128 bytes without '/'", id)
	}
	return nil
}

// pidnsOf is the PID namespace of pid ("" when it cannot be read).
func pidnsOf(sys system, pid int) string {
	l, err := sys.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return ""
	}
	return l
}

// pidnsOfContainer is the namespace whose processes belong to c.
func (s *Service) pidnsOfContainer(c *guestContainer) string {
	if c.ownPidns || c.joinsPidns() {
		return c.pidns
	}
	return s.selfPidns
}

// joinsPidns reports whether c's processes live in the default
// container's PID namespace (a pod's shareProcessNamespace).
func (c *guestContainer) joinsPidns() bool { return slices.Contains(c.joinNs, "pid") }

// sharesPidns reports whether another container's processes may live in
// c's PID namespace: c joins the default container's, or c is the default
// container and a member joins its. Its processes are then told from the
// others' by their cgroup. s.mu is held.
func (s *Service) sharesPidns(c *guestContainer) bool {
	if c.joinsPidns() {
		return true
	}
	if c.id != "" {
		return false
	}
	for _, o := range s.containers {
		if o != nil && o.joinsPidns() {
			return true
		}
	}
	return false
}

// Setup mounts a container's root disk and the spec's mounts, fixes up
// device nodes and sets the hostname. The default container ("") is set up
// once per VM; pod members may follow. A failed Setup leaves nothing
// mounted and may be retried.
func (s *Service) Setup(ctx context.Context, req *agentapi.SetupRequest) (_ *agentapi.Empty, err error) {
	id := req.ContainerId
	if err := checkContainerID(id); err != nil {
		return nil, err
	}
	rootPropagation, err := checkSetup(id, req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	switch {
	case s.state == guestShuttingDown || s.state == guestSettingUp && id == "":
		state := s.state
		s.mu.Unlock()
		return nil, errorf(ErrFailedPrecondition, "setup of container %q: the guest is %s", id, state)
	case id == "" && s.state != guestBooted:
		state := s.state
		s.mu.Unlock()
		return nil, errorf(ErrFailedPrecondition, "setup: the guest is %s, want %s", state, guestBooted)
	}
	if _, ok := s.containers[id]; ok {
		s.mu.Unlock()
		return nil, errorf(ErrAlreadyExists, "setup: container %q exists", id)
	}
	s.containers[id] = nil // reserved while it is set up
	prev := s.state
	if s.state == guestBooted {
		s.state = guestSettingUp
	}
	s.mu.Unlock()
	// A handed-off PID 1 is the machine's: its PID namespace is the VM's.
	ownPidns := req.OwnPidNamespace && !(s.pid1 != nil && id == "")
	c := &guestContainer{id: id, rootfs: s.rootfsOf(id), ownPidns: ownPidns,
		newNs: req.NewNamespaces, joinNs: req.JoinNamespaces, hostname: req.Hostname, sysctls: req.Sysctls,
		seccomp: req.Seccomp, seccompFlags: req.SeccompFlags, rootPropagation: rootPropagation,
		masked: req.MaskedPaths, readonly: req.ReadonlyPaths}
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			delete(s.containers, id)
			if s.state == guestSettingUp {
				s.state = prev
			}
			return
		}
		s.containers[id] = c
		s.state = guestSetUp
	}()

	start := time.Now()
	// The guest's cgroup2 before any container's: the first mount of the
	// hierarchy makes its superblock, read-only for good if a spec's ro
	// cgroup mount came first.
	s.setupCgroups()
	for _, sh := range []*agentapi.Share{req.RootShare, req.Share} {
		if sh == nil {
			continue
		}
		if err := s.ensureShare(sh); err != nil {
			return nil, err
		}
	}
	dev := req.RootDevice
	if req.RootSerial != "" {
		if dev, err = s.findDisk(ctx, req.RootSerial); err != nil {
			return nil, fmt.Errorf("setup of container %q: %w", id, err)
		}
		// A disk slot may have held another image before.
		if err := s.sys.FlushBuffers(dev); err != nil {
			return nil, fmt.Errorf("setup of container %q: %w", id, err)
		}
	}
	// The container's cgroup before its mounts: a cgroup mount binds it.
	cgroupDir := s.makeCgroup(id)
	defer func() {
		if err != nil && cgroupDir != "" {
			s.removeCgroup(id)
		}
	}()
	own := slices.Clone(c.newNs)
	if c.ownPidns {
		own = append(own, "pid")
	}
	c.mounted, err = s.setupRoot(ctx, c.rootfs, dev, cgroupDir, req, mountsOwnProc(own, c.joinNs))
	if err != nil {
		return nil, err
	}
	for _, m := range req.Mounts {
		if m.Type == "cgroup" || m.Type == "cgroup2" {
			if target, err := procinit.ScopedJoin(s.sys, c.rootfs, m.Destination); err == nil {
				c.cgroupMount, c.cgroupReadonly = target, slices.Contains(m.Options, "ro")
			}
		}
	}
	if req.Hostname != "" {
		if err := s.sys.Sethostname(req.Hostname); err != nil {
			s.unmountAll(c.mounted)
			return nil, fmt.Errorf("setting hostname %q: %w", req.Hostname, err)
		}
	}
	if err := s.applySysctls(req.Sysctls); err != nil {
		s.unmountAll(c.mounted)
		return nil, fmt.Errorf("setup of container %q: %w", id, err)
	}
	if err := s.applyLimits(id, req.Limits); err != nil {
		s.unmountAll(c.mounted)
		return nil, err
	}
	if err := s.applyDeviceRules(id, req.DeviceRules); err != nil {
		s.unmountAll(c.mounted)
		return nil, err
	}
	s.log.Debugf("setup of container %q: %s on %s with %d mounts, %d device nodes in %v", id, dev, c.rootfs,
		len(req.Mounts), len(req.DeviceNodes), time.Since(start).Round(time.Millisecond))
	return &agentapi.Empty{}, nil
}

// ensureShare mounts the VM's shared directory once, for every container.
func (s *Service) ensureShare(sh *agentapi.Share) error {
	s.mu.Lock()
	for _, m := range s.vmMounted {
		if m == path.Clean(sh.MountPoint) {
			s.mu.Unlock()
			return nil
		}
	}
	s.mu.Unlock()
	mp, err := s.mountShare(sh)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.vmMounted = append(s.vmMounted, path.Clean(mp))
	s.mu.Unlock()
	return nil
}

// checkSetup checks what Setup takes beyond the mounts, before anything is
// reserved, and returns the root's propagation flags.
func checkSetup(id string, req *agentapi.SetupRequest) (uintptr, error) {
	for _, ns := range req.NewNamespaces {
		if ns != "uts" && ns != "ipc" && ns != "mount" && ns != "cgroup" {
			return 0, errorf(ErrInvalidArgument, "setup of container %q: namespace %q: want uts, ipc, mount or cgroup", id, ns)
		}
	}
	for _, ns := range req.JoinNamespaces {
		if ns != "uts" && ns != "ipc" && ns != "pid" {
			return 0, errorf(ErrInvalidArgument, "setup of container %q: namespace %q to join: want uts, ipc or pid", id, ns)
		}
	}
	if req.OwnPidNamespace && slices.Contains(req.JoinNamespaces, "pid") {
		return 0, errorf(ErrInvalidArgument, "setup of container %q: a PID namespace of its own and the default container's", id)
	}
	if len(req.Seccomp)%8 != 0 || len(req.Seccomp)/8 > procinit.MaxSeccompInstructions {
		return 0, errorf(ErrInvalidArgument, "setup of container %q: seccomp program of %d bytes: want whole 8-byte instructions, at most %d", id, len(req.Seccomp), procinit.MaxSeccompInstructions)
	}
	var rootPropagation uintptr
	if p := req.RootfsPropagation; p != "" {
		flag, ok := propagationFlags[p]
		if !ok {
			return 0, errorf(ErrInvalidArgument, "setup of container %q: rootfs propagation %q: want shared, slave, private or unbindable (r-prefixed too)", id, p)
		}
		rootPropagation = flag
	}
	if len(req.JoinNamespaces) > 0 && id == "" {
		return 0, errorf(ErrInvalidArgument, "setup: the default container has no other container's namespaces to join")
	}
	return rootPropagation, nil
}

// diskWait bounds the wait for an attached disk to show up with a size.
const diskWait = 30 * time.Second

// findDisk finds the virtio disk whose serial is serial and waits until
// it has a size (a qemu slot grows when its image is attached).
func (s *Service) findDisk(ctx context.Context, serial string) (string, error) {
	deadline := time.Now().Add(diskWait)
	for {
		names, err := s.sys.ReadDir("/sys/block")
		if err != nil {
			return "", fmt.Errorf("listing /sys/block: %w", err)
		}
		for _, n := range names {
			b, err := s.sys.ReadFile(filepath.Join("/sys/block", n, "serial"))
			if err != nil || strings.TrimSpace(string(b)) != serial {
				continue
			}
			size, err := s.sys.ReadFile(filepath.Join("/sys/block", n, "size"))
			if err == nil && strings.TrimSpace(string(size)) != "0" {
				return "/dev/" + n, nil
			}
		}
		if time.Now().After(deadline) {
			return "", errorf(ErrNotFound, "no disk with serial %q and a size after %s", serial, diskWait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RemoveContainer kills a pod member's processes and unmounts its root.
func (s *Service) RemoveContainer(_ context.Context, req *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	id := req.ContainerId
	if id == "" {
		return nil, errorf(ErrInvalidArgument, "removing a container: the default container lives as long as the VM")
	}
	s.mu.Lock()
	c := s.containers[id]
	if c == nil {
		s.mu.Unlock()
		return nil, errorf(ErrNotFound, "removing container %q: not set up", id)
	}
	delete(s.containers, id)
	s.mu.Unlock()
	// Its own processes, and in its own PID namespace whatever they
	// started.
	s.mu.Lock()
	var own []*process
	for _, p := range s.procs {
		if p != nil && p.container == id {
			own = append(own, p)
		}
	}
	s.mu.Unlock()
	for _, p := range own {
		if p.getState() != procExited {
			_ = s.sys.Kill(p.pid, unix.SIGKILL)
		}
	}
	if (c.ownPidns || c.joinsPidns()) && c.pidns != "" {
		deadline := time.Now().Add(s.cfg.TermGrace)
		for {
			_ = s.signalAll(c, unix.SIGKILL)
			procs, err := s.userProcs(c)
			if err != nil || len(procs) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	s.sys.Sync()
	s.unmountAll(c.mounted)
	s.removeCgroup(id)
	s.log.Debugf("container %q removed", id)
	return &agentapi.Empty{}, nil
}
