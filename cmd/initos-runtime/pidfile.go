package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// writePidFile writes pid in decimal without a newline, atomically (temp
// file and rename), as conmon expects of runc's --pid-file.
func writePidFile(path string, pid int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".pid-")
	if err != nil {
		return fmt.Errorf("writing pid file %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(strconv.Itoa(pid)); err != nil {
		tmp.Close()
		return fmt.Errorf("writing pid file %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing pid file %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing pid file %q: %w", path, err)
	}
	return nil
}
