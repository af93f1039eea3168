package guestagent

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// finitModule loads one module file; a module that is already loaded (or
// built in and so "exists") counts as loaded.
func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "finit_module", Path: path, Err: err}
	}
	return nil
}
