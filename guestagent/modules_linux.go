package guestagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/initrd"
)

// sysModuleDir is where the kernel lists its modules (sysfs).
const sysModuleDir = "/sys/module"

// moduleLive reports whether module name is in the kernel, by sys (its
// /sys/module): sys/NAME is there once a module is coming; only a live one
// counts (a load in progress elsewhere is waited for by finit_module, which
// then says EEXIST). A built-in module has no initstate.
func moduleLive(sys, name string) bool {
	dir := filepath.Join(sys, name)
	state, err := os.ReadFile(filepath.Join(dir, "initstate"))
	if err != nil {
		_, derr := os.Stat(dir)
		return derr == nil && errors.Is(err, os.ErrNotExist)
	}
	return strings.TrimSpace(string(state)) == "live"
}

// loadUnlessLive loads the module file path with load unless sys (the
// kernel's /sys/module) shows the module live already: errModuleLive.
func loadUnlessLive(path, sys string, load func(path string) error) error {
	if name, ok := initrd.ModuleName(filepath.Base(path)); ok && moduleLive(sys, name) {
		return errModuleLive
	}
	return load(path)
}

// finitModule loads one module file; a module that is already loaded (or
// built in and so "exists") counts as loaded, and one the kernel has live
// is not loaded again: finit_module of a loaded module says EEXIST, but
// Linux 6.1 finds the duplicate name only after it has copied the file and
// checked its signature (7-47 ms a module under TCG, measured in a clone
// whose template had loaded the net group that ConfigureNetwork loads
// again).
func finitModule(path string) error {
	return loadUnlessLive(path, sysModuleDir, func(path string) error { return loadModuleFile(path, finitFd) })
}

// finitFd is finit_module(2) without parameters.
func finitFd(fd int) error { return unix.FinitModule(fd, "", 0) }

// loadModuleFile loads the module file path with finit: a .ko as it is, a
// compressed one (.ko.xz, .ko.zst, .ko.gz) decompressed by the initrd
// builder's decoders into a memfd. EEXIST (loaded already, or by a
// concurrent request: the kernel serialises loads of one name) is success.
func loadModuleFile(path string, finit func(fd int) error) error {
	var f *os.File
	if strings.HasSuffix(path, ".ko") {
		var err error
		if f, err = os.Open(path); err != nil {
			return err
		}
	} else {
		data, err := initrd.ReadModule(path)
		if err != nil {
			return err
		}
		fd, err := unix.MemfdCreate(filepath.Base(path), unix.MFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("decompressing module %q: memfd: %w", path, err)
		}
		f = os.NewFile(uintptr(fd), filepath.Base(path))
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fmt.Errorf("decompressing module %q: %w", path, err)
		}
	}
	defer f.Close()
	if err := finit(int(f.Fd())); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "finit_module", Path: path, Err: err}
	}
	return nil
}
