package vmm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ConsoleKeep is how much of the end of a console log CapLog keeps.
const ConsoleKeep = 1 << 20

// CapLog bounds the space a log written by another process (the VMM's
// console log, which the guest fills at will) takes: all but its last keep
// bytes are punched out (FALLOC_FL_PUNCH_HOLE), freeing their blocks (tmpfs
// pages, disk blocks) without moving the writer's offset, so the file stays
// sparse: its size still counts every byte written, and its end, which
// ConsoleTail reads, is intact. done is how far it was punched before (0 at
// first); CapLog returns how far it is now. A missing file is not an error.
func CapLog(path string, keep, done int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return done, fmt.Errorf("capping log %q: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return done, fmt.Errorf("capping log %q: %w", path, err)
	}
	// Whole pages only, and only once the log has grown a keep's worth
	// beyond the last punch, so that a busy log is not punched each time.
	end := (fi.Size() - keep) &^ (4<<10 - 1)
	if end < done+keep {
		return done, nil
	}
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, end); err != nil {
		return done, fmt.Errorf("capping log %q: punching [0, %d): %w", path, end, err)
	}
	return end, nil
}
