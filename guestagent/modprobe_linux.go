package guestagent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/initrd"
)

// isModprobe reports whether the agent runs as the kernel's modprobe.
func isModprobe() bool {
	return len(os.Args) > 0 && filepath.Base(os.Args[0]) == initrd.ModprobeName
}

// runModprobe is the modprobe program in the guest. The kernel starts it
// with no descriptors open: its line goes to /dev/console.
func runModprobe(args []string) int {
	var out io.Writer = io.Discard
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		defer f.Close()
		out = f
	}
	sys := realModprobeSys{}
	if data, err := os.ReadFile("/proc/cmdline"); err == nil {
		if c, err := ParseCmdline(string(data)); err == nil {
			sys.transport = c.Modules
		}
	}
	return runModprobeWith(sys, newLogger(out, false), args)
}

// enableModprobe makes the kernel run the agent as its modprobe, when the
// VM has a modules share. Not in switchroot mode: the system that becomes
// PID 1 brings its own (the kernel's default /sbin/modprobe).
func (a *agent) enableModprobe() {
	if a.cmdline.Modules == "" || a.cmdline.Mode == ModeSwitchRoot {
		return
	}
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte(ModprobePath), 0); err != nil {
		a.log.Printf("setting kernel.modprobe: %v", err)
	}
}

// realModprobeSys is modprobeSys in the guest.
type realModprobeSys struct {
	transport string // the share's filesystem (Cmdline.Modules); "": no share
}

func (realModprobeSys) index() (*initrd.ModIndex, error) { return initrd.OpenModIndex(ModIndexPath) }

func (realModprobeSys) loaded(name string) bool { return moduleLive(sysModuleDir, name) }

func (realModprobeSys) inInitrd(name string) (string, bool) {
	p := filepath.Join(ModulesDir, name+".ko")
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular()
}

// load: modprobe asked loaded first.
func (realModprobeSys) load(path string) error { return loadModuleFile(path, finitFd) }

// mountShare mounts the modules share read-only at modulesMountPoint the
// first time, under a lock that concurrent requests wait on, after
// loading its transport's module group from the initrd. The lock is held
// only for this: a module's init may ask for another module, whose request
// must not wait for the first.
func (s realModprobeSys) mountShare() (string, error) {
	if s.transport == "" {
		return "", errorf(ErrNotFound, "no modules share: the kernel command line has no initos.modules=")
	}
	if err := os.MkdirAll(modulesMountPoint, 0o755); err != nil {
		return "", fmt.Errorf("creating %q: %w", modulesMountPoint, err)
	}
	lockPath := modulesMountPoint + ".lock"
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("opening %q: %w", lockPath, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %q: %w", lockPath, err)
	}
	if isMountPoint(modulesMountPoint) {
		return modulesMountPoint, nil
	}
	if _, _, err := loadGroups(ModulesDir, false, []string{s.transport}, finitModule, nil); err != nil {
		return "", fmt.Errorf("loading the %s modules for the modules share: %w", s.transport, err)
	}
	data := ""
	if s.transport == "9p" {
		data = "trans=virtio,version=9p2000.L,msize=262144,cache=loose"
	}
	if err := unix.Mount(modulesTag, modulesMountPoint, s.transport, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return "", fmt.Errorf("mounting %s share %q on %q: %w", s.transport, modulesTag, modulesMountPoint, err)
	}
	return modulesMountPoint, nil
}

// isMountPoint reports whether dir is on another device than its parent.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
