package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockWait takes an exclusive flock on path, polling every poll until ctx
// ends.
func lockWait(ctx context.Context, path string, poll time.Duration) (unlock func(), err error) {
	return lockAny(ctx, []string{path}, poll, fmt.Sprintf("%q", path))
}

// lockAny takes an exclusive flock on the first of paths that is free,
// trying them all again every poll until ctx ends ("waiting for what").
// unlock closes the file, which releases the lock; so does the holder's
// death.
func lockAny(ctx context.Context, paths []string, poll time.Duration, what string) (unlock func(), err error) {
	for {
		for _, path := range paths {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				return nil, fmt.Errorf("opening lock file %q: %w", path, err)
			}
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				return func() { f.Close() }, nil
			}
			f.Close()
			if !errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("locking %q: %w", path, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(poll):
		}
	}
}
