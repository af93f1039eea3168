package vmm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Supervisor is the driver-independent life of a VMM process: claim the
// sockets, start virtiofsd and the VMM, wait until the VMM is ready, stop
// it gracefully then by force, and clean up. Drivers fill in the fields
// before the first call; its methods are safe for concurrent use and Start
// succeeds at most once.
type Supervisor struct {
	Cfg          *Config
	Name         string   // the VMM's name in messages: "qemu"
	Bin          string   // its executable
	Args         []string // its arguments
	Log          string   // file for its stdout and stderr
	Sockets      []string // sockets it creates: claimed before Start, removed by Stop
	StartTimeout time.Duration
	StopTimeout  time.Duration
	// Ready reports whether the started VMM is up; Start polls it until it
	// succeeds or fails with ErrNotReadyable.
	Ready func(ctx context.Context) error
	// Shutdown asks the VMM to exit; on error Stop sends SIGTERM.
	Shutdown func(ctx context.Context) error
	// Virtiofsd, when set, is started first, once for each virtiofs share
	// i of Cfg.Shares, on StateDir/VirtiofsSocket(i) (also removed by
	// Stop), logging to StateDir/VirtiofsdLog(i).
	Virtiofsd string
	// VirtiofsdCache, when set, is a directory where the dialect of
	// Virtiofsd is kept between starts (VirtiofsdFlavorOfBinary).
	VirtiofsdCache string
	// VirtiofsdGrace is how long the VMM may take to end after a virtiofsd
	// did before that virtiofsd counts as lost and the VMM is stopped (a
	// VMM that ends first makes virtiofsd exit too, and either may be seen
	// first); 0 means 2 s.
	VirtiofsdGrace time.Duration
	// ExtraFiles, when set, returns the descriptors the VMM gets as 3, 4,
	// ... (a clone's RAM); Start calls it once, before the VMM, and closes
	// them once the VMM has them.
	ExtraFiles func() ([]*os.File, error)

	mu       sync.Mutex // serialises Start and Stop, guards the fields below
	started  bool
	proc     *Process
	vfsd     []*Process
	vfsdTags []string // the share of each vfsd
	stopping atomic.Bool
	// lost is why a virtiofsd ended under the running VMM, which was
	// then stopped (watchVirtiofsd); Wait reports it.
	lost atomic.Pointer[error]
}

// SocketPaths are every socket the VM uses: Sockets and the virtiofs
// shares'; Stop removes them all.
func (s *Supervisor) SocketPaths() []string {
	socks := append([]string{}, s.Sockets...)
	if s.Virtiofsd == "" {
		return socks
	}
	for i, sh := range s.Cfg.Shares {
		if sh.Mode == ShareVirtiofs {
			socks = append(socks, s.Cfg.SocketPath(VirtiofsSocket(i)))
		}
	}
	return socks
}

// Start launches virtiofsd (if any) and the VMM and returns once Ready
// succeeds. On failure everything it started is killed and its sockets are
// removed.
func (s *Supervisor) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("starting vm %q: %w", s.Cfg.ID, ErrAlreadyStarted)
	}
	ctx, cancel := context.WithTimeout(ctx, s.StartTimeout)
	defer cancel()

	if err := os.MkdirAll(s.Cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state dir of vm %q: %w", s.Cfg.ID, err)
	}
	for _, sock := range s.SocketPaths() {
		if err := ClaimSocket(sock); err != nil {
			return fmt.Errorf("starting vm %q: %w", s.Cfg.ID, err)
		}
	}
	defer func() {
		if err != nil {
			_ = s.kill()
			s.proc, s.vfsd, s.vfsdTags = nil, nil, nil
		}
	}()
	var flavor VirtiofsdFlavor
	if s.Virtiofsd != "" && s.Cfg.HasShares(ShareVirtiofs) {
		if flavor, err = VirtiofsdFlavorOfBinary(ctx, s.Virtiofsd, s.VirtiofsdCache); err != nil {
			return fmt.Errorf("starting virtiofsd for vm %q: %w", s.Cfg.ID, err)
		}
	}
	for i, sh := range s.Cfg.Shares {
		if s.Virtiofsd == "" || sh.Mode != ShareVirtiofs {
			continue
		}
		p, err := StartVirtiofsd(s.Virtiofsd, flavor, s.Cfg.SocketPath(VirtiofsSocket(i)), sh, s.Cfg.SocketPath(VirtiofsdLog(i)))
		if err != nil {
			return fmt.Errorf("starting virtiofsd for share %q of vm %q: %w", sh.Tag, s.Cfg.ID, err)
		}
		s.vfsd = append(s.vfsd, p)
		s.vfsdTags = append(s.vfsdTags, sh.Tag)
		if err := s.adjustOOM(p); err != nil {
			return err
		}
	}
	var extra []*os.File
	if s.ExtraFiles != nil {
		if extra, err = s.ExtraFiles(); err != nil {
			return fmt.Errorf("starting vm %q: %w", s.Cfg.ID, err)
		}
	}
	s.proc, err = StartProcessIn(s.Cfg.Netns, s.Name, s.Bin, s.Args, s.Log, extra)
	for _, f := range extra {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("vm %q: %w", s.Cfg.ID, err)
	}
	if err := s.adjustOOM(s.proc); err != nil {
		return err
	}
	if err := s.waitReady(ctx); err != nil {
		return fmt.Errorf("starting vm %q: %w", s.Cfg.ID, s.virtiofsdFirst(err))
	}
	// Ready means the VMM's sockets exist: they are the owner's only.
	if err := RestrictSockets(s.SocketPaths()...); err != nil {
		return fmt.Errorf("starting vm %q: %w", s.Cfg.ID, err)
	}
	s.started = true
	for i, p := range s.vfsd {
		go s.watchVirtiofsd(p, s.vfsdTags[i], s.proc)
	}
	return nil
}

// adjustOOM gives p Cfg.OOMScoreAdj, if set. It runs right after p's
// start: the VMM touches the guest's RAM only as the guest boots.
func (s *Supervisor) adjustOOM(p *Process) error {
	if s.Cfg.OOMScoreAdj == nil {
		return nil
	}
	if err := SetOOMScoreAdj(p.Pid(), *s.Cfg.OOMScoreAdj); err != nil {
		return fmt.Errorf("starting vm %q: %s: %w", s.Cfg.ID, p.name, err)
	}
	return nil
}

// SetOOMScoreAdj changes the host OOM killer's adjustment of the running
// VMM and its virtiofsd (a pod's VM, as its containers come and go).
func (s *Supervisor) SetOOMScoreAdj(adj int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return fmt.Errorf("setting the oom_score_adj of vm %q: %w", s.Cfg.ID, ErrNotStarted)
	}
	for _, p := range append([]*Process{s.proc}, s.vfsd...) {
		if p.Exited() {
			continue // reaped: its pid may be another process's now
		}
		if err := SetOOMScoreAdj(p.Pid(), adj); err != nil {
			return fmt.Errorf("vm %q: %s: %w", s.Cfg.ID, p.name, err)
		}
	}
	return nil
}

// defaultVirtiofsdGrace is Supervisor.VirtiofsdGrace's default.
const defaultVirtiofsdGrace = 2 * time.Second

// watchVirtiofsd stops the VMM vm when virtiofsd p, serving share tag,
// ends while vm runs and nobody is stopping it: the guest's files behind
// that share are gone (its requests would hang or fail), so its container
// is lost as with a VMM crash; Wait then says which virtiofsd ended and how.
func (s *Supervisor) watchVirtiofsd(p *Process, tag string, vm *Process) {
	select {
	case <-vm.Done():
		return
	case <-p.Done():
	}
	select {
	case <-vm.Done():
		return
	case <-time.After(cmp.Or(s.VirtiofsdGrace, defaultVirtiofsdGrace)):
	}
	if s.stopping.Load() {
		return
	}
	err := fmt.Errorf("virtiofsd of share %q (pid %d) ended: %s", tag, p.Pid(), p.ExitStatus())
	if s.lost.CompareAndSwap(nil, &err) {
		_ = vm.Kill()
	}
}

// virtiofsdFirst adds to err, the VMM's failure to start, the exit of a
// virtiofsd that ended first: the VMM's connection to its socket then
// failed, and virtiofsd's log says why.
func (s *Supervisor) virtiofsdFirst(err error) error {
	for i, p := range s.vfsd {
		select {
		case <-p.Done():
		case <-time.After(100 * time.Millisecond):
			continue // still serving: not the cause
		}
		return fmt.Errorf("%w; virtiofsd of share %q had ended: %w", err, s.vfsdTags[i], p.ExitError())
	}
	return err
}

// waitReady polls Ready until it succeeds, the VMM exits or ctx ends.
// Often: a restored VM is ready about 100 ms after its VMM starts, and a
// poll that finds no socket yet costs a failed connect.
func (s *Supervisor) waitReady(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.Ready(rctx)
		cancel()
		if err == nil || errors.Is(err, ErrNotReadyable) {
			return err
		}
		select {
		case <-s.proc.Done():
			return fmt.Errorf("%w: %w", ErrVMExited, s.proc.ExitError())
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) not ready after %s: %w (last: %v)", s.Name, s.proc.Pid(), s.StartTimeout, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Running returns the VMM process once Start succeeded, else ErrNotStarted.
func (s *Supervisor) Running() (*Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil, fmt.Errorf("vm %q: %w", s.Cfg.ID, ErrNotStarted)
	}
	return s.proc, nil
}

// ExitedError says that the VMM is gone, why, and what the guest printed
// last; it wraps ErrVMExited.
func (s *Supervisor) ExitedError(p *Process) error {
	cause := p.ExitError()
	if lost := s.lost.Load(); lost != nil {
		cause = fmt.Errorf("%w, so the VMM was stopped: %w", *lost, cause)
	}
	return fmt.Errorf("vm %q: %w: %w; last console output:\n%s",
		s.Cfg.ID, ErrVMExited, cause, ConsoleTail(s.Cfg.ConsoleLog, 20))
}

// Stop asks the VMM to exit (Shutdown, else SIGTERM), SIGKILLs it when it
// has not exited within StopTimeout or ctx, kills virtiofsd and removes
// the sockets. Stopping a VM that never started or already stopped is a
// no-op.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	var errs []error
	if !s.proc.Exited() {
		// Only an exit Stop causes is a clean one for Wait: a crash
		// before it still reports.
		s.stopping.Store(true)
		gctx, cancel := context.WithTimeout(ctx, s.StopTimeout)
		if err := s.Shutdown(gctx); err != nil {
			if err := s.proc.Signal(syscall.SIGTERM); err != nil {
				errs = append(errs, err)
			}
		}
		select {
		case <-s.proc.Done():
		case <-gctx.Done():
		}
		cancel()
	}
	if err := s.kill(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("stopping vm %q: %w", s.Cfg.ID, errors.Join(errs...))
	}
	return nil
}

// Kill ends the VMM at once (SIGKILL), kills virtiofsd and removes the
// sockets, as the end of Stop does without its orderly exit: for a guest
// that has said it is quiesced (every process gone, every filesystem
// synced), where qemu's own exit (QMP quit: its devices torn down one by
// one) only costs time. Wait reports the exit as a clean one, as after
// Stop. Killing a VM that never started or already ended is a no-op.
func (s *Supervisor) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	s.stopping.Store(true)
	if err := s.kill(); err != nil {
		return fmt.Errorf("killing vm %q: %w", s.Cfg.ID, err)
	}
	return nil
}

// kill SIGKILLs what still runs and removes the sockets.
func (s *Supervisor) kill() error {
	var errs []error
	if s.proc != nil {
		errs = append(errs, s.proc.Kill())
	}
	for _, p := range s.vfsd {
		errs = append(errs, p.Kill())
	}
	errs = append(errs, RemoveSockets(s.SocketPaths()...))
	return errors.Join(errs...)
}

// Wait blocks until the VMM exited. It returns nil when the VMM exited
// with status 0 (the guest powered off) or because Stop ended it, else
// ExitedError.
func (s *Supervisor) Wait() error {
	p, err := s.Running()
	if err != nil {
		return err
	}
	if err := p.Wait(); err == nil || s.stopping.Load() {
		return nil
	}
	return s.ExitedError(p)
}

// Pid is the VMM's process id, 0 before Start.
func (s *Supervisor) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}
