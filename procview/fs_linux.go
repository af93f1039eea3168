package procview

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// Source lists the container's processes with detail (the agent's
// ListProcesses with detail set).
type Source func(ctx context.Context) (*agentapi.ListProcessesResponse, error)

// HostFile reads the host's /proc/NAME ("stat", "uptime").
type HostFile func(name string) ([]byte, error)

const (
	// listTimeout bounds one listing: a reader of the view's /proc gets
	// EIO instead of waiting on a VM that does not answer.
	listTimeout = 5 * time.Second
	// maxAge: a lookup uses the last listing while it is this fresh. A
	// listing of the top directory always lists anew, so ps-like tools
	// (readdir, then each pid's files) see one moment.
	maxAge = time.Second
)

// hostFiles are the host's files shown at the top of the view's /proc:
// what ps-like tools read besides the processes (the boot time, uptime).
var hostFiles = []string{"stat", "uptime"}

// procFiles are a process directory's files.
var procFiles = []string{"cmdline", "stat", "status"}

// FS is the file system: the latest listing of the container's processes.
type FS struct {
	src  Source
	host HostFile
	log  *log.Logger
	now  func() time.Time
	// timeout bounds a listing (listTimeout).
	timeout time.Duration

	mu    sync.Mutex
	snap  *Snapshot
	taken time.Time
}

// New is an FS listing processes through src and the host's files through
// host; failed listings are logged to l (the reader sees EIO).
func New(src Source, host HostFile, l *log.Logger) *FS {
	return &FS{src: src, host: host, log: l, now: time.Now, timeout: listTimeout}
}

// snapshot is the latest listing, taken anew when fresh is set or it is
// older than maxAge.
func (v *FS) snapshot(ctx context.Context, fresh bool) (*Snapshot, syscall.Errno) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !fresh && v.snap != nil && v.now().Sub(v.taken) < maxAge {
		return v.snap, 0
	}
	snap, err := v.list(ctx)
	if err != nil {
		v.log.Printf("procview: %v", err)
		return nil, syscall.EIO
	}
	v.snap, v.taken = snap, v.now()
	return snap, 0
}

// proc is process pid of the latest listing: ENOENT once it has exited.
func (v *FS) proc(ctx context.Context, pid int) (*Proc, syscall.Errno) {
	snap, errno := v.snapshot(ctx, false)
	if errno != 0 {
		return nil, errno
	}
	if p := snap.Proc(pid); p != nil {
		return p, 0
	}
	return nil, syscall.ENOENT
}

func (v *FS) list(ctx context.Context) (*Snapshot, error) {
	stat, err := v.host("stat")
	if err != nil {
		return nil, fmt.Errorf("reading the host's /proc/stat: %w", err)
	}
	boot, err := BootTime(stat)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	resp, err := v.src(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the container's processes: %w", err)
	}
	return Render(resp, boot)
}

// root is the top directory.
type root struct {
	fs.Inode
	v *FS
}

var (
	_ fs.NodeReaddirer = (*root)(nil)
	_ fs.NodeLookuper  = (*root)(nil)
	_ fs.NodeGetattrer = (*root)(nil)
)

func (r *root) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Nlink = syscall.S_IFDIR|0o555, 2
	return 0
}

func (r *root) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	snap, errno := r.v.snapshot(ctx, true)
	if errno != 0 {
		return nil, errno
	}
	var entries []fuse.DirEntry
	for _, name := range hostFiles {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG})
	}
	for _, pid := range snap.Pids {
		entries = append(entries, fuse.DirEntry{Name: strconv.Itoa(pid), Mode: syscall.S_IFDIR})
	}
	return fs.NewListDirStream(entries), 0
}

func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if slices.Contains(hostFiles, name) {
		return newChild(ctx, &r.Inode, &file{v: r.v, name: name}, out)
	}
	pid, err := strconv.Atoi(name)
	if err != nil || strconv.Itoa(pid) != name {
		return nil, syscall.ENOENT
	}
	snap, errno := r.v.snapshot(ctx, false)
	if errno != 0 {
		return nil, errno
	}
	if snap.Proc(pid) == nil {
		return nil, syscall.ENOENT
	}
	return newChild(ctx, &r.Inode, procDir(r.v, pid), out)
}

// attrNode is a node that fills its attributes.
type attrNode interface {
	fs.InodeEmbedder
	attr(ctx context.Context, a *fuse.Attr) syscall.Errno
}

// newChild makes the inode of a lookup's result under parent.
func newChild(ctx context.Context, parent *fs.Inode, n attrNode, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if errno := n.attr(ctx, &out.Attr); errno != 0 {
		return nil, errno
	}
	return parent.NewInode(ctx, n, fs.StableAttr{Mode: out.Attr.Mode & syscall.S_IFMT}), 0
}

// dir is a directory of fixed entries: /proc/PID and /proc/PID/ns.
type dir struct {
	fs.Inode
	perm    uint32
	entries []fuse.DirEntry
	// child is the node of an entry's name, nil for none.
	child func(name string) attrNode
}

var (
	_ fs.NodeReaddirer = (*dir)(nil)
	_ fs.NodeLookuper  = (*dir)(nil)
	_ fs.NodeGetattrer = (*dir)(nil)
)

// procDir is /proc/PID: its files and ns.
func procDir(v *FS, pid int) *dir {
	d := &dir{perm: 0o555, entries: []fuse.DirEntry{{Name: "ns", Mode: syscall.S_IFDIR}}}
	for _, name := range procFiles {
		d.entries = append(d.entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG})
	}
	d.child = func(name string) attrNode {
		if name == "ns" {
			return nsDir(v, pid)
		}
		if slices.Contains(procFiles, name) {
			return &file{v: v, pid: pid, name: name}
		}
		return nil
	}
	return d
}

// nsDir is /proc/PID/ns, which holds pid only.
func nsDir(v *FS, pid int) *dir {
	return &dir{perm: 0o511, entries: []fuse.DirEntry{{Name: "pid", Mode: syscall.S_IFLNK}},
		child: func(name string) attrNode {
			if name != "pid" {
				return nil
			}
			return &file{v: v, pid: pid, name: nsPidLink}
		}}
}

func (d *dir) attr(ctx context.Context, a *fuse.Attr) syscall.Errno {
	a.Mode, a.Nlink = syscall.S_IFDIR|d.perm, 2
	return 0
}

func (d *dir) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return d.attr(ctx, &out.Attr)
}

func (d *dir) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	return fs.NewListDirStream(d.entries), 0
}

func (d *dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n := d.child(name)
	if n == nil {
		return nil, syscall.ENOENT
	}
	return newChild(ctx, &d.Inode, n, out)
}

// nsPidLink is the name of /proc/PID/ns/pid among a process's files.
const nsPidLink = "ns/pid"

// file is a host file (pid 0) or a process's file: procFiles, or the
// symlink nsPidLink.
type file struct {
	fs.Inode
	v    *FS
	pid  int
	name string
}

var (
	_ fs.NodeOpener     = (*file)(nil)
	_ fs.NodeReader     = (*file)(nil)
	_ fs.NodeGetattrer  = (*file)(nil)
	_ fs.NodeReadlinker = (*file)(nil)
)

// content is the file's bytes now.
func (f *file) content(ctx context.Context) ([]byte, syscall.Errno) {
	if f.pid == 0 {
		b, err := f.v.host(f.name)
		if err != nil {
			f.v.log.Printf("procview: reading the host's /proc/%s: %v", f.name, err)
			return nil, syscall.EIO
		}
		return b, 0
	}
	p, errno := f.v.proc(ctx, f.pid)
	if errno != 0 {
		return nil, errno
	}
	switch f.name {
	case "stat":
		return p.Stat, 0
	case "status":
		return p.Status, 0
	case nsPidLink:
		if p.Pidns == "" {
			return nil, syscall.ENOENT
		}
		return []byte(p.Pidns), 0
	}
	return p.Cmdline, 0
}

func (f *file) attr(ctx context.Context, a *fuse.Attr) syscall.Errno {
	b, errno := f.content(ctx)
	a.Mode, a.Size, a.Nlink = syscall.S_IFREG|0o444, uint64(len(b)), 1
	if f.name == nsPidLink {
		a.Mode = syscall.S_IFLNK | 0o777
	}
	return errno
}

func (f *file) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if f.name != nsPidLink {
		return nil, syscall.EINVAL
	}
	return f.content(ctx)
}

func (f *file) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return f.attr(ctx, &out.Attr)
}

// opened is an open file's bytes, fixed at open as procfs's seq files are
// for one read.
type opened []byte

func (f *file) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EACCES
	}
	b, errno := f.content(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	// Direct I/O: reads go by the content, not by a size cached earlier.
	return opened(b), fuse.FOPEN_DIRECT_IO, 0
}

func (f *file) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	b, ok := fh.(opened)
	if !ok {
		return nil, syscall.EBADF
	}
	if off >= int64(len(b)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(b[off:min(int64(len(b)), off+int64(len(dest)))]), 0
}

// Open opens a new FUSE connection, for Mount. A caller that changes its
// root (the view's pivot_root) opens it before.
func Open() (fd int, err error) {
	fd, err = unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /dev/fuse: %w", err)
	}
	return fd, nil
}

// Mount mounts the FUSE connection fd from Open on target in the calling
// thread's mount namespace, for Serve. Until it is served, readers of
// target wait; closing fd unserved aborts it.
func Mount(fd int, target string) error {
	opts := fmt.Sprintf("fd=%d,rootmode=40555,user_id=0,group_id=0,allow_other,default_permissions", fd)
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY)
	if err := unix.Mount("initos-proc", target, "fuse.initos-proc", flags, opts); err != nil {
		return fmt.Errorf("mounting the processes' view on %q: %w", target, err)
	}
	return nil
}

// Serve serves v on the connection fd from Mount until it is unmounted
// (the view's mount namespace goes with the monitor). On error fd is
// closed, which aborts the mount.
func Serve(fd int, v *FS) (*fuse.Server, error) {
	zero := time.Duration(0)
	opts := &fs.Options{
		// Every access asks again: processes come and go.
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName: "initos-proc", Name: "initos-proc", DisableXAttrs: true, Logger: v.log,
			// Requests are small; a reader's buffer need not be large.
			MaxWrite: 64 << 10,
		},
	}
	// "/dev/fd/N" tells go-fuse the mount is done and N is its connection.
	srv, err := fuse.NewServer(fs.NewNodeFS(&root{v: v}, opts), fmt.Sprintf("/dev/fd/%d", fd), &opts.MountOptions)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("serving the processes' view: %w", err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		return nil, fmt.Errorf("serving the processes' view: %w", err)
	}
	return srv, nil
}
