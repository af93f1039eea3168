package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

// Defaults of Options.
const (
	DefaultBinary       = "qemu-system-x86_64"
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 10 * time.Second
)

// Options are the host side of a qemu VM; zero values mean defaults.
type Options struct {
	Binary         string        // qemu executable; default DefaultBinary from PATH
	Virtiofsd      string        // virtiofsd executable; default vmm.FindVirtiofsd
	VirtiofsdCache string        // where virtiofsd's dialect is kept between starts; "": probed each start
	Accel          *vmm.Accel    // default vmm.DetectAccel()
	TSCKHz         int           // default vmm.TSCKHz()
	StartTimeout   time.Duration // Start's bound on qemu answering QMP
	StopTimeout    time.Duration // Stop's bound on a graceful quit before SIGKILL
}

// VM is one qemu process running a microvm. Its methods are safe for
// concurrent use; Start succeeds at most once.
type VM struct {
	cfg   vmm.Config
	accel vmm.Accel
	tsc   int
	sup   vmm.Supervisor
	qmpMu sync.Mutex // one QMP session at a time

	// incoming: a clone's restore has started loading its state.
	incoming bool
	// resized: restore has given a clone's disks their sizes; hotAdded
	// is how many of its virtiofs shares it has added (attachOwn).
	resized  bool
	hotAdded int

	slotMu   sync.Mutex
	slotUsed map[int]bool // disk slots holding an attached image, by index
}

// New checks cfg and the host (binaries, acceleration); nothing runs yet.
func New(cfg vmm.Config, opts Options) (*VM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		opts.Binary = DefaultBinary
	}
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("finding qemu: %w", err)
	}
	if opts.Accel == nil {
		a := vmm.DetectAccel()
		opts.Accel = &a
	}
	if opts.TSCKHz <= 0 {
		opts.TSCKHz = vmm.TSCKHz()
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	v := &VM{cfg: cfg, accel: *opts.Accel, tsc: opts.TSCKHz}
	v.sup = vmm.Supervisor{
		Cfg:          &v.cfg,
		Name:         "qemu",
		Bin:          bin,
		Args:         v.Args(),
		Log:          cfg.SocketPath(qemuLog),
		Sockets:      []string{cfg.SocketPath(agentSocket), cfg.SocketPath(qmpSocket)},
		StartTimeout: opts.StartTimeout,
		StopTimeout:  opts.StopTimeout,
		Ready:        v.ready,
		Shutdown: func(ctx context.Context) error {
			_, err := v.qmpRun(ctx, "quit")
			return err
		},
	}
	if cfg.RestoreFrom != nil {
		v.sup.ExtraFiles = func() ([]*os.File, error) { return cloneFiles(&cfg) }
	}
	// A template's virtiofs shares are empty ports: no virtiofsd.
	if cfg.HasShares(vmm.ShareVirtiofs) && cfg.Template == nil {
		v.sup.VirtiofsdCache = opts.VirtiofsdCache
		if v.sup.Virtiofsd, err = vmm.FindVirtiofsd(opts.Virtiofsd); err != nil {
			return nil, fmt.Errorf("vm %q: virtiofs shares: %w", cfg.ID, err)
		}
	}
	return v, nil
}

// cloneFiles opens a clone's descriptors: cloneStateFd, and cloneRAMFd
// for a virtiofs clone.
func cloneFiles(cfg *vmm.Config) ([]*os.File, error) {
	state, err := os.Open(cfg.RestoreFrom.State)
	if err != nil {
		return nil, fmt.Errorf("vm %q: opening its template's state: %w", cfg.ID, err)
	}
	files := []*os.File{state}
	if cfg.HasShares(vmm.ShareVirtiofs) {
		ram, err := copyRAM(cfg.RestoreFrom.RAM, int64(cfg.MemoryMiB)<<20)
		if err != nil {
			state.Close()
			return nil, fmt.Errorf("vm %q: %w", cfg.ID, err)
		}
		files = append(files, ram)
	}
	return files, nil
}

// Args is the qemu command line (without the binary) Start runs.
func (v *VM) Args() []string {
	return buildArgs(&v.cfg, hostParams{accel: v.accel.Name, tscKHz: v.tsc})
}

// Accel is the acceleration the VM runs with.
func (v *VM) Accel() vmm.Accel { return v.accel }

// ModuleGroups are the initrd module groups the guest needs.
func (v *VM) ModuleGroups() []string { return ModuleGroups(&v.cfg) }

// Start launches qemu (and virtiofsd for a virtiofs share) and returns
// once QMP reports the guest running; the guest may still be booting. On
// failure everything it started is killed and its sockets are removed.
func (v *VM) Start(ctx context.Context) error { return v.sup.Start(ctx) }

// Stop ends qemu: QMP "quit" (SIGTERM if QMP fails), SIGKILL when it has
// not exited within StopTimeout or ctx; then virtiofsd; then it removes
// the sockets. Stopping a VM that never started or already stopped is a
// no-op.
func (v *VM) Stop(ctx context.Context) error { return v.sup.Stop(ctx) }

// Kill ends the VMM at once (vmm.Supervisor.Kill): for a quiesced guest.
func (v *VM) Kill() error { return v.sup.Kill() }

// Wait blocks until qemu exited. It returns nil when qemu exited cleanly
// (the guest powered off) or because Stop ended it, else an error wrapping
// vmm.ErrVMExited with qemu's and the console's last lines.
func (v *VM) Wait() error { return v.sup.Wait() }

// Pid is qemu's process id, 0 before Start.
func (v *VM) Pid() int { return v.sup.Pid() }

// SetOOMScoreAdj changes the host OOM killer's adjustment of the VMM and
// its virtiofsd (vmm.Supervisor.SetOOMScoreAdj).
func (v *VM) SetOOMScoreAdj(adj int) error { return v.sup.SetOOMScoreAdj(adj) }

func (v *VM) ready(ctx context.Context) error {
	if v.cfg.RestoreFrom != nil {
		return v.restore(ctx)
	}
	st, err := v.qmpStatus(ctx)
	if err == nil && st != "running" {
		err = fmt.Errorf("qemu status %q", st)
	}
	return err
}

// DialAgent connects to the agent's virtio-serial port through qemu's
// socket, retrying until ctx ends. qemu accepts the connection whether or
// not the guest agent has opened its port: what the host writes waits in
// the socket until it does, and the caller's first request (Ping) with a
// deadline is what proves the agent is there. The socket takes one client
// at a time.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	p, err := v.sup.Running()
	if err != nil {
		return nil, err
	}
	sock := v.cfg.SocketPath(agentSocket)
	var d net.Dialer
	for {
		if p.Exited() {
			return nil, v.sup.ExitedError(p)
		}
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			return c, nil
		}
		select {
		case <-p.Done():
		case <-ctx.Done():
			return nil, fmt.Errorf("vm %q: dialing %q: %w (%v); last console output:\n%s",
				v.cfg.ID, sock, vmm.ErrAgentTimeout, err, vmm.ConsoleTail(v.cfg.ConsoleLog, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Pause stops the guest's CPUs (QMP "stop").
func (v *VM) Pause(ctx context.Context) error { return v.control(ctx, "stop") }

// Resume restarts them (QMP "cont").
func (v *VM) Resume(ctx context.Context) error { return v.control(ctx, "cont") }

func (v *VM) control(ctx context.Context, command string) error {
	if err := v.qmpExec(ctx, command, nil); err != nil {
		return fmt.Errorf("vm %q: qmp %s: %w", v.cfg.ID, command, err)
	}
	return nil
}

// qmpRun and qmpStatus serialise the VM's QMP sessions: qemu's monitor
// serves one client at a time.
func (v *VM) qmpRun(ctx context.Context, command string) ([]byte, error) {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	return qmpRun(ctx, v.cfg.SocketPath(qmpSocket), command)
}

func (v *VM) qmpStatus(ctx context.Context) (string, error) {
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	return qmpStatus(ctx, v.cfg.SocketPath(qmpSocket))
}

// qmpExec runs one command with arguments (nil: none) in its own session
// on a running VM.
func (v *VM) qmpExec(ctx context.Context, command string, args any) error {
	p, err := v.sup.Running()
	if err != nil {
		return err
	}
	if p.Exited() {
		return v.sup.ExitedError(p)
	}
	v.qmpMu.Lock()
	defer v.qmpMu.Unlock()
	q, err := qmpDial(ctx, v.cfg.SocketPath(qmpSocket))
	if err != nil {
		return fmt.Errorf("connecting to qmp: %w", err)
	}
	defer q.Close()
	_, err = q.executeArgs(command, args)
	return err
}
