package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// diskAttacher is what a pod needs of its VM: disks given to the guest
// after boot. Both drivers have it (qemu through its disk slots).
type diskAttacher interface {
	AttachDisk(ctx context.Context, path string) (serial string, err error)
	DetachDisk(ctx context.Context, serial string) error
}

// AddContainer adds container id of bundle b to the pod whose sandbox is
// inst: its rootfs in the VM's root share (or its own disk, attached to the
// running VM), its own root in the guest and a PID namespace of its own or
// the sandbox's (guestNamespaces), its bind mounts in the pod's shared
// directory.
// The member shares the sandbox's VM and agent; its Shutdown removes only
// what is its own. On error nothing of it is left.
func (inst *Instance) AddContainer(ctx context.Context, c Config, b *bundle.Bundle, id string) (*Instance, error) {
	return inst.addContainer(ctx, c, b, id, nil)
}

// addContainer is AddContainer with the member's rootfs and bind sources
// taken from trees where it holds them (a member whose own monitor made
// them, member.go).
func (inst *Instance) addContainer(ctx context.Context, c Config, b *bundle.Bundle, id string, trees mountTrees) (_ *Instance, retErr error) {
	if inst.pod != nil || inst.remote != nil {
		return nil, fmt.Errorf("adding container %q: %q is itself a pod member: %w", id, inst.ID, ErrWrongState)
	}
	att, ok := inst.vm.(diskAttacher)
	if !ok && inst.root == nil {
		return nil, fmt.Errorf("adding container %q to the VM of %q: %w: the %s driver cannot attach disks", id, inst.ID, ErrUnsupported, inst.Driver)
	}
	if inst.share == nil {
		return nil, fmt.Errorf("adding container %q to the VM of %q: it was not booted as a pod sandbox: %w", id, inst.ID, ErrWrongState)
	}
	if trees != nil && inst.root == nil {
		return nil, fmt.Errorf("adding container %q to the VM of %q: %w: its rootfs would be a disk (config rootfs %q) built from a path only its own monitor sees", id, inst.ID, ErrUnsupported, RootfsDisk)
	}
	m := &Instance{
		ID: id, Bundle: b, StateDir: inst.StateDir, Driver: inst.Driver, Accel: inst.Accel, Agent: inst.Agent,
		vm: inst.vm, consoleLog: inst.consoleLog, exited: inst.exited, containerID: id, pod: inst,
	}
	defer func() {
		if retErr != nil {
			m.removeMember(context.WithoutCancel(ctx))
		}
	}()
	if _, err := switchRoot(b.Spec, true); err != nil {
		return nil, fmt.Errorf("adding container %q: %w", id, err)
	}
	seccompProg, seccompFlags, err := guestSeccomp(b.Spec)
	if err != nil {
		return nil, fmt.Errorf("adding container %q: %w", id, err)
	}
	if err := checkBlockIO(b.Spec); err != nil {
		return nil, fmt.Errorf("adding container %q: %w", id, err)
	}
	if err := checkBinds(b.Spec); err != nil {
		return nil, fmt.Errorf("adding container %q: %w", id, err)
	}
	if err := inst.oom.join(id, b.Spec.Process.OOMScoreAdj, inst.setOOMScoreAdj); err != nil {
		return nil, fmt.Errorf("adding container %q to the VM of %q: %w", id, inst.ID, err)
	}
	name := "m-" + randomSuffix()
	var msh *share
	served := ""
	if inst.share.fs == vmm.ShareVirtiofs {
		// Its entries only in virtiofsd's namespace (share.add).
		served = inst.share.dir
	}
	mounts, err := shareMounts(b.Spec, &msh, filepath.Join(inst.share.dir, name), filepath.Join(shareMount, name), served, trees)
	if msh != nil {
		m.memberShare = msh.dir
	}
	if err != nil {
		return nil, err
	}
	var setup *agentapi.SetupRequest
	if inst.root != nil {
		if err := inst.root.bind(b.Rootfs, name, trees); err != nil {
			return nil, fmt.Errorf("adding container %q to the VM of %q: %w", id, inst.ID, err)
		}
		m.rootName = name
		setup = setupRequest(b, nil, mounts, inst.share, true)
		setup.RootShare, setup.RootPath = inst.root.agentShare(), name
	} else {
		m.Disk = filepath.Join(c.disksDir(), id+"-"+randomSuffix()+".img")
		info, _, err := c.diskCache().Build(ctx, bundle.BuildDisk, b.Rootfs, m.Disk, cacheKey(b), bundle.DiskOptions{FreeSpace: c.FreeSpace})
		if err != nil {
			return nil, fmt.Errorf("building disk for container %q: %w", id, err)
		}
		serial, err := att.AttachDisk(ctx, m.Disk)
		if err != nil {
			return nil, fmt.Errorf("attaching the disk of container %q: %w", id, err)
		}
		m.serial = serial
		setup = setupRequest(b, info, mounts, inst.share, true)
		setup.RootSerial = serial
	}
	setup.ContainerId = id
	setup.Seccomp, setup.SeccompFlags = seccompProg, seccompFlags
	if err := m.setup(ctx, setup); err != nil {
		return nil, fmt.Errorf("adding container %q to the VM of %q: %w", id, inst.ID, err)
	}
	return m, nil
}

// setOOMScoreAdj gives the VM's host processes adj (hostOOM).
func (inst *Instance) setOOMScoreAdj(adj int) error {
	a, ok := inst.vm.(oomAdjuster)
	if !ok {
		return fmt.Errorf("the %s driver cannot change its processes' oom_score_adj: %w", inst.Driver, ErrUnsupported)
	}
	return a.SetOOMScoreAdj(adj)
}

// takesMembers reports whether other monitors' containers can join the
// VM (member.go): it has a root share and a shared directory (a shared
// mount) for their roots and binds, and the agent serves it as a whole (not
// a switch-root VM).
func (inst *Instance) takesMembers() bool {
	return inst.root != nil && inst.share != nil && !inst.switchRoot && inst.pod == nil && inst.remote == nil
}

// removeMember ends a pod member: its processes and mounts in the guest,
// its root share entry or disk (detached, removed) and its share entries.
func (m *Instance) removeMember(ctx context.Context) error {
	var errs []error
	m.once.Do(func() {
		select {
		case <-m.exited:
		default:
			err := m.call(ctx, callTimeout, func(ctx context.Context) error {
				_, err := m.Agent.RemoveContainer(ctx, &agentapi.ContainerRequest{ContainerId: m.containerID})
				return err
			})
			var ae *AgentError
			if err != nil && !(errors.As(err, &ae) && ae.Code == codes.NotFound) {
				errs = append(errs, fmt.Errorf("removing container %q from the VM of %q: %w", m.ID, m.pod.ID, err))
			}
			if m.serial != "" {
				if err := m.vm.(diskAttacher).DetachDisk(ctx, m.serial); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if m.rootName != "" {
			if err := m.pod.root.unbind(m.rootName); err != nil {
				errs = append(errs, err)
			}
		}
		if m.memberShare != "" {
			if err := removeShareDir(m.memberShare); err != nil {
				errs = append(errs, err)
			}
		}
		if m.Disk != "" {
			if err := os.Remove(m.Disk); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing disk %q: %w", m.Disk, err))
			}
		}
		if err := m.pod.oom.leave(m.ID, m.pod.setOOMScoreAdj); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

// memberShutdown is Shutdown for a pod member: the VM stays.
func (m *Instance) memberShutdown(ctx context.Context) error {
	t0 := time.Now()
	defer func() { m.Timings.Teardown = time.Since(t0) }()
	return m.removeMember(ctx)
}
