package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestBootSlots(t *testing.T) {
	tcg, kvm := vmm.Accel{Name: vmm.AccelTCG}, vmm.Accel{Name: vmm.AccelKVM}
	tests := []struct {
		name   string
		config int
		accel  vmm.Accel
		want   int
	}{
		{"TCG: the host's CPUs", 0, tcg, goruntime.NumCPU()},
		{"KVM: no limit", 0, kvm, 0},
		{"configured", 3, kvm, 3},
		{"configured under TCG", 1, tcg, 1},
		{"no limit asked", -1, tcg, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bootSlots(Config{BootConcurrency: tt.config}, tt.accel); got != tt.want {
				t.Errorf("bootSlots = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestAcquireBootSlot: n slots are taken at once, the next start waits
// until one is released, a wait ends with its context naming the slots,
// and no limit takes nothing.
func TestAcquireBootSlot(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r1, err := acquireBootSlot(ctx, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := acquireBootSlot(ctx, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r3, err := acquireBootSlot(ctx, dir, 2)
		if err == nil {
			defer r3()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a third start took a slot while both were held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	r1()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("a waiting start after a release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting start did not get the released slot")
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	r4, err := acquireBootSlot(short, dir, 1) // slot0: the waiter's, released; slot1: r2's
	if err != nil {
		t.Fatalf("slot0 is free again: %v", err)
	}
	if _, err := acquireBootSlot(short, dir, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a held slot past the deadline: %v, want DeadlineExceeded", err)
	}
	r4()
	r2()

	release, err := acquireBootSlot(ctx, "/nonexistent/never-created", 0)
	if err != nil {
		t.Fatalf("no limit: %v", err)
	}
	release()
}
