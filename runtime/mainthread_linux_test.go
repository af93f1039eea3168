package runtime

import (
	"os"
	goruntime "runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMainThreadStays: goroutines that leave a namespace change behind on
// their locked thread never do it on the main thread, whose namespaces
// /proc/self shows (mainthread_linux.go). Many such goroutines run while
// the main goroutine waits for the test, the moment when an unlocked main
// thread would run one of them.
func TestMainThreadStays(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (unshare(CLONE_NEWUTS))")
	}
	before, err := os.Readlink("/proc/self/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 64 {
			wg.Go(func() {
				goruntime.LockOSThread() // never unlocked: the thread ends with the goroutine
				if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("unshare: %v", err)
		}
		if after, err := os.Readlink("/proc/self/ns/uts"); err != nil || after != before {
			t.Fatalf("round %d: /proc/self/ns/uts is %q (%v), was %q: the main thread ran a goroutine that changed its namespace", round, after, err, before)
		}
	}
}
