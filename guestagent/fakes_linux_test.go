package guestagent

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fakeInfo is a fs.FileInfo of fakeSystem.
type fakeInfo struct {
	name string
	mode fs.FileMode
}

func (i fakeInfo) Name() string       { return i.name }
func (i fakeInfo) Size() int64        { return 0 }
func (i fakeInfo) Mode() fs.FileMode  { return i.mode }
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fakeInfo) Sys() any           { return nil }

// fakeSystem records what the service does and holds a tiny file tree.
type fakeSystem struct {
	mu         sync.Mutex
	calls      []string
	files      map[string]fs.FileMode
	links      map[string]string
	mounted    map[string]bool
	failMount  map[string]error // by target
	procs      []procInfo
	killed     []string
	onKill     func(pid int, sig unix.Signal) error
	poweredOff chan struct{}
	fileData   map[string][]byte // ReadFile contents (sysfs attributes)
	failWrite  map[string]error  // WriteFile errors, by path
	// onWrite, when set, sees each WriteFile (under mu: it may change
	// fileData, as a kernel file's write changes what another reads).
	onWrite func(p string, data []byte)
	// onMount, when set, sees each successful Mount (under mu: it may add
	// the files a mounted filesystem shows).
	onMount func(source, target string)
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{
		files:      map[string]fs.FileMode{"/": fs.ModeDir, "/dev": fs.ModeDir, "/dev/vda": fs.ModeDevice},
		links:      map[string]string{},
		mounted:    map[string]bool{},
		failMount:  map[string]error{},
		poweredOff: make(chan struct{}),
		fileData:   map[string][]byte{},
	}
}

func (f *fakeSystem) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls returns the recorded calls whose text starts with one of prefixes.
func (f *fakeSystem) Calls(prefixes ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

func (f *fakeSystem) Lstat(p string) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.links[p]; ok {
		return fakeInfo{filepath.Base(p), fs.ModeSymlink}, nil
	}
	if m, ok := f.files[p]; ok {
		return fakeInfo{filepath.Base(p), m}, nil
	}
	return nil, &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
}

func (f *fakeSystem) Stat(p string) (fs.FileInfo, error) { return f.Lstat(p) }

func (f *fakeSystem) Readlink(p string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.links[p]; ok {
		return t, nil
	}
	return "", &fs.PathError{Op: "readlink", Path: p, Err: unix.EINVAL}
}

func (f *fakeSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("mount %s %s %s %#x %s", source, target, fstype, flags, data)
	if err := f.failMount[target]; err != nil && flags&unix.MS_REMOUNT == 0 {
		return err
	}
	f.mounted[target] = true
	if f.onMount != nil {
		f.onMount(source, target)
	}
	return nil
}

func (f *fakeSystem) MountSetattr(target string, recursive bool, set, clr uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("mount_setattr %s recursive=%v set=%#x clr=%#x", target, recursive, set, clr)
	return nil
}

func (f *fakeSystem) Unmount(target string, flags int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("umount %s %d", target, flags)
	if !f.mounted[target] {
		return unix.EINVAL
	}
	delete(f.mounted, target)
	return nil
}

func (f *fakeSystem) MkdirAll(p string, perm fs.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for d := p; d != "/" && d != "."; d = filepath.Dir(d) {
		f.files[d] = fs.ModeDir | perm
	}
	return nil
}

func (f *fakeSystem) CreateFile(p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("create %s", p)
	if _, ok := f.files[p]; !ok {
		f.files[p] = 0o644
	}
	return nil
}

func (f *fakeSystem) WriteFile(p string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("write %s %q", p, data)
	if err := f.failWrite[p]; err != nil {
		return err
	}
	f.files[p] = 0o644
	if f.onWrite != nil {
		f.onWrite(p, data)
	}
	return nil
}

func (f *fakeSystem) Remove(p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove %s", p)
	delete(f.files, p)
	delete(f.links, p)
	return nil
}

func (f *fakeSystem) Mknod(p string, mode uint32, dev uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("mknod %s %#o %d:%d", p, mode, unix.Major(dev), unix.Minor(dev))
	f.files[p] = fs.ModeDevice
	return nil
}

func (f *fakeSystem) Chmod(p string, mode uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("chmod %s %#o", p, mode)
	return nil
}

func (f *fakeSystem) Lchown(p string, uid, gid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("chown %s %d:%d", p, uid, gid)
	return nil
}

func (f *fakeSystem) Symlink(target, link string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("symlink %s -> %s", link, target)
	f.links[link] = target
	return nil
}

func (f *fakeSystem) CopyTree(src, dst string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("copytree %s %s", src, dst)
	return nil
}

func (f *fakeSystem) Sethostname(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("hostname %s", name)
	return nil
}

func (f *fakeSystem) Sync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("sync")
}

func (f *fakeSystem) Kill(pid int, sig unix.Signal) error {
	f.mu.Lock()
	f.record("kill %d %d", pid, sig)
	f.killed = append(f.killed, fmt.Sprintf("%d:%d", pid, sig))
	onKill := f.onKill
	f.mu.Unlock()
	if onKill != nil {
		return onKill(pid, sig)
	}
	return nil
}

// KillAll records the signal and kills, as kill(-1) does, every process of
// procs but PID 1 through onKill.
func (f *fakeSystem) KillAll(sig unix.Signal) error {
	f.mu.Lock()
	f.record("killall %d", sig)
	procs := append([]procInfo(nil), f.procs...)
	onKill := f.onKill
	f.mu.Unlock()
	for _, p := range procs {
		if p.Pid != 1 && onKill != nil {
			if err := onKill(p.Pid, sig); err != nil {
				return err
			}
		}
	}
	return nil
}

// HasChildren says whether procs has any process but PID 1.
func (f *fakeSystem) HasChildren() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("haschildren")
	for _, p := range f.procs {
		if p.Pid != 1 {
			return true, nil
		}
	}
	return false, nil
}

func (f *fakeSystem) ListProcs() ([]procInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("listprocs")
	return append([]procInfo(nil), f.procs...), nil
}

func (f *fakeSystem) ReadFile(p string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.fileData[p]; ok {
		return b, nil
	}
	return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

func (f *fakeSystem) ReadDir(p string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for k := range f.fileData {
		if filepath.Dir(filepath.Dir(k)) == p {
			names = append(names, filepath.Base(filepath.Dir(k)))
		}
	}
	return names, nil
}

func (f *fakeSystem) FlushBuffers(dev string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("flush %s", dev)
	return nil
}

// BootTime is a fixed moment: 2026-12-01 08:00 UTC.
func (f *fakeSystem) BootTime() (time.Time, error) {
	return time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), nil
}

func (f *fakeSystem) SetClock(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("setclock %s", t.UTC().Format(time.RFC3339))
	return nil
}

func (f *fakeSystem) Reseed(entropy []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reseed %d", len(entropy))
	return nil
}

func (f *fakeSystem) PowerOff() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("poweroff")
	close(f.poweredOff)
	return nil
}

// mountedTargets lists what is mounted now, sorted.
// mountedTargets are the mounts of containers (the guest's own cgroup2
// mount, made once per VM, is not one).
func (f *fakeSystem) mountedTargets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for t := range f.mounted {
		if t != cgroupRoot {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// fakeProc is a process of fakeLauncher that a test drives.
type fakeProc struct {
	req      launchRequest
	pid      int
	stdin    *io.PipeReader // what the service wrote
	stdout   *io.PipeWriter
	stderr   *io.PipeWriter
	exited   chan exitInfo
	started  chan struct{}
	startErr error
	resized  []string
}

// exit ends the process with status after closing its output.
func (p *fakeProc) exit(status int32) {
	p.stdout.Close()
	if p.stderr != nil {
		p.stderr.Close()
	}
	p.exited <- exitInfo{Status: status, At: time.Unix(1700000000, 42)}
}

// fakeLauncher launches fakeProcs.
type fakeLauncher struct {
	mu        sync.Mutex
	nextPid   int
	procs     map[string]*fakeProc
	launchErr error
}

func newFakeLauncher() *fakeLauncher {
	return &fakeLauncher{nextPid: 100, procs: map[string]*fakeProc{}}
}

func (l *fakeLauncher) Launch(_ context.Context, req launchRequest) (*launched, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.launchErr != nil {
		return nil, l.launchErr
	}
	l.nextPid++
	p := &fakeProc{req: req, pid: l.nextPid, exited: make(chan exitInfo, 1), started: make(chan struct{})}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p.stdin, p.stdout = inR, outW
	h := &launched{
		Pid:    p.pid,
		Stdin:  inW,
		Stdout: outR,
		Exited: p.exited,
		Start: func(context.Context) error {
			if p.startErr != nil {
				return p.startErr
			}
			close(p.started)
			return nil
		},
	}
	if req.Process.Terminal {
		h.Resize = func(w, hh uint16) error {
			p.resized = append(p.resized, fmt.Sprintf("%dx%d", w, hh))
			return nil
		}
	} else {
		errR, errW := io.Pipe()
		p.stderr = errW
		h.Stderr = errR
	}
	l.procs[req.ID] = p
	return h, nil
}

func (l *fakeLauncher) proc(id string) *fakeProc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[id]
}
