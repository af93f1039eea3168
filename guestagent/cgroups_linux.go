package guestagent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// cgroupRoot is where the agent mounts cgroup v2: each container's
// processes live in a cgroup of their own below it, which Stats reads.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupControllers are enabled for the containers' cgroups.
const cgroupControllers = "+cpu +memory +pids"

// cgroupOf is container cid's cgroup directory.
func cgroupOf(cid string) string {
	if cid == "" {
		return filepath.Join(cgroupRoot, "initos-default")
	}
	return filepath.Join(cgroupRoot, "c-"+cid)
}

// setupCgroups mounts cgroup v2 and enables the controllers once; a guest
// kernel without it leaves the containers without stats, not broken.
func (s *Service) setupCgroups() {
	s.cgroupOnce.Do(func() {
		if err := s.sys.MkdirAll(cgroupRoot, 0o755); err != nil {
			s.log.Printf("cgroups: %v", err)
			return
		}
		if err := s.sys.Mount("cgroup2", cgroupRoot, "cgroup2", 0, ""); err != nil {
			s.log.Printf("cgroups: mounting cgroup2 on %s: %v (no container stats)", cgroupRoot, err)
			return
		}
		s.mu.Lock()
		s.vmMounted = append(s.vmMounted, cgroupRoot)
		s.mu.Unlock()
		if err := s.sys.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte(cgroupControllers)); err != nil {
			s.log.Printf("cgroups: enabling %s: %v", cgroupControllers, err)
		}
		s.cgroups = true
	})
}

// makeCgroup creates container cid's cgroup and returns its directory, or
// "" when the guest has no cgroup v2 or the cgroup could not be made.
func (s *Service) makeCgroup(cid string) string {
	s.setupCgroups()
	if !s.cgroups {
		return ""
	}
	dir := cgroupOf(cid)
	if err := s.sys.MkdirAll(dir, 0o755); err != nil {
		s.log.Printf("cgroups: creating the cgroup of container %q: %v", cid, err)
		return ""
	}
	return dir
}

// removeCgroup removes a removed container's (empty) cgroup.
func (s *Service) removeCgroup(cid string) {
	if !s.cgroups {
		return
	}
	if err := s.sys.Remove(cgroupOf(cid)); err != nil {
		s.log.Printf("cgroups: removing the cgroup of container %q: %v", cid, err)
	}
}

// Stats reads container cid's cgroup.
func (s *Service) Stats(_ context.Context, req *agentapi.ContainerRequest) (*agentapi.StatsResponse, error) {
	s.mu.Lock()
	c := s.containers[req.ContainerId]
	s.mu.Unlock()
	if c == nil {
		return nil, errorf(ErrNotFound, "stats: container %q is not set up", req.ContainerId)
	}
	if !s.cgroups {
		return nil, errorf(ErrFailedPrecondition, "stats of container %q: the guest has no cgroup v2", req.ContainerId)
	}
	dir := cgroupOf(req.ContainerId)
	read := func(name string) ([]byte, error) {
		b, err := s.sys.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("stats of container %q: %w", req.ContainerId, err)
		}
		return b, nil
	}
	resp := &agentapi.StatsResponse{}
	b, err := read("cpu.stat")
	if err != nil {
		return nil, err
	}
	cpu := keyed(b)
	resp.CpuUsageUsec, resp.CpuUserUsec, resp.CpuSystemUsec = cpu["usage_usec"], cpu["user_usec"], cpu["system_usec"]
	if b, err = read("memory.current"); err != nil {
		return nil, err
	}
	resp.MemoryUsageBytes, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if b, err = read("memory.max"); err != nil {
		return nil, err
	}
	if v := strings.TrimSpace(string(b)); v != "max" {
		resp.MemoryLimitBytes, _ = strconv.ParseUint(v, 10, 64)
	} else if mi, err := s.sys.ReadFile("/proc/meminfo"); err == nil {
		resp.MemoryLimitBytes = keyed(mi)["MemTotal:"] << 10
	}
	if b, err = read("memory.stat"); err != nil {
		return nil, err
	}
	mem := keyed(b)
	resp.MemoryAnonBytes, resp.MemoryFileBytes = mem["anon"], mem["file"]
	if b, err = read("pids.current"); err != nil {
		return nil, err
	}
	resp.PidsCurrent, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if b, err = read("memory.events"); err != nil {
		return nil, err
	}
	ev := keyed(b)
	resp.MemoryOomEvents, resp.MemoryOomKillEvents = ev["oom"], ev["oom_kill"]
	return resp, nil
}

// oomKills is container cid's count of OOM kills (memory.events
// oom_kill); 0 without cgroups.
func (s *Service) oomKills(cid string) uint64 {
	if !s.cgroups {
		return 0
	}
	b, err := s.sys.ReadFile(filepath.Join(cgroupOf(cid), "memory.events"))
	if err != nil {
		return 0
	}
	return keyed(b)["oom_kill"]
}

// keyed parses "key value" lines (cpu.stat, memory.stat, meminfo).
func keyed(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}

// applyLimits writes a container's limits into its cgroup.
func (s *Service) applyLimits(cid string, l *agentapi.CgroupLimits) error {
	if l == nil {
		return nil
	}
	if !s.cgroups {
		return errorf(ErrNotSupported, "limits of container %q: the guest has no cgroup v2", cid)
	}
	var files [][2]string
	if l.MemoryBytes > 0 {
		files = append(files, [2]string{"memory.max", strconv.FormatInt(l.MemoryBytes, 10)})
	}
	if l.Pids > 0 {
		files = append(files, [2]string{"pids.max", strconv.FormatInt(l.Pids, 10)})
	}
	if l.CpuQuotaUs > 0 {
		period := l.CpuPeriodUs
		if period == 0 {
			period = 100000
		}
		files = append(files, [2]string{"cpu.max", fmt.Sprintf("%d %d", l.CpuQuotaUs, period)})
	}
	if l.CpuWeight > 0 {
		files = append(files, [2]string{"cpu.weight", strconv.FormatUint(l.CpuWeight, 10)})
	}
	for _, f := range files {
		path := filepath.Join(cgroupOf(cid), f[0])
		if err := s.sys.WriteFile(path, []byte(f[1])); err != nil {
			return fmt.Errorf("limits of container %q: writing %q to %s: %w", cid, f[1], path, err)
		}
	}
	return nil
}

// UpdateLimits writes new limits to a set-up container's cgroup.
func (s *Service) UpdateLimits(_ context.Context, req *agentapi.UpdateLimitsRequest) (*agentapi.Empty, error) {
	s.mu.Lock()
	c := s.containers[req.ContainerId]
	s.mu.Unlock()
	if c == nil {
		return nil, errorf(ErrNotFound, "updating the limits of container %q: not set up", req.ContainerId)
	}
	if err := s.applyLimits(req.ContainerId, req.Limits); err != nil {
		return nil, err
	}
	return &agentapi.Empty{}, nil
}

// freezeWait bounds how long FreezeContainer waits for the cgroup to reach
// the state it asked for (a task in uninterruptible sleep delays it).
const freezeWait = 10 * time.Second

// FreezeContainer freezes or thaws container req.ContainerId's processes:
// its cgroup's cgroup.freeze, then cgroup.events until it says so (the
// kernel freezes asynchronously), as runc pauses a cgroup v2 container.
func (s *Service) FreezeContainer(ctx context.Context, req *agentapi.FreezeRequest) (*agentapi.Empty, error) {
	verb, want := "thawing", "0"
	if req.Frozen {
		verb, want = "freezing", "1"
	}
	s.mu.Lock()
	c := s.containers[req.ContainerId]
	s.mu.Unlock()
	if c == nil {
		return nil, errorf(ErrNotFound, "%s container %q: it is not set up", verb, req.ContainerId)
	}
	if !s.cgroups {
		return nil, errorf(ErrFailedPrecondition, "%s container %q: the guest has no cgroup v2", verb, req.ContainerId)
	}
	dir := cgroupOf(req.ContainerId)
	if err := s.sys.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte(want)); err != nil {
		return nil, fmt.Errorf("%s container %q: %w", verb, req.ContainerId, err)
	}
	deadline := time.Now().Add(freezeWait)
	for {
		b, err := s.sys.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil {
			return nil, fmt.Errorf("%s container %q: %w", verb, req.ContainerId, err)
		}
		if ev, ok := keyed(b)["frozen"]; ok && strconv.FormatUint(ev, 10) == want {
			return &agentapi.Empty{}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s container %q: its cgroup %s did not say frozen %s within %v: %w", verb, req.ContainerId, dir, want, freezeWait, context.DeadlineExceeded)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s container %q: %w", verb, req.ContainerId, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
