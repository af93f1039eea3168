package runtime

import (
	"os"
	"testing"
)

func TestProcUsageOfSelf(t *testing.T) {
	// Burn a little CPU so the count is above zero.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	_ = x
	cpu, rss, err := procUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if cpu == 0 || rss < 1<<20 {
		t.Fatalf("cpu %d ns, rss %d bytes: want both above zero (rss over 1 MiB)", cpu, rss)
	}
	if _, _, err := procUsage(1 << 30); err == nil {
		t.Fatal("a missing pid gave no error")
	}
}
