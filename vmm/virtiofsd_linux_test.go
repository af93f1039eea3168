package vmm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeVirtiofsd writes a virtiofsd that prints help and counts its runs in
// dir/runs.
func fakeVirtiofsd(t *testing.T, dir, help string) string {
	t.Helper()
	bin := filepath.Join(dir, "virtiofsd")
	script := "#!/bin/sh\necho run >> " + filepath.Join(dir, "runs") + "\ncat <<'EOF'\n" + help + "\nEOF\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func runs(t *testing.T, dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "runs"))
	return strings.Count(string(b), "run\n")
}

func TestVirtiofsdFlavorOfBinary(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		cache    bool
		help     string
		want     VirtiofsdFlavor
		wantRuns int // --help runs over three calls
		wantErr  string
	}{
		{"rust, cached", true, "  --shared-dir <SHARED_DIR>", VirtiofsdRust, 1, ""},
		{"c, cached", true, "    -o source=PATH             shared directory tree", VirtiofsdC, 1, ""},
		{"no cache dir: probed each time", false, "--shared-dir", VirtiofsdRust, 3, ""},
		{"unknown help is not cached", true, "usage: something else", 0, 3, "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := fakeVirtiofsd(t, dir, tt.help)
			cache := ""
			if tt.cache {
				cache = filepath.Join(dir, "cache")
				if err := os.Mkdir(cache, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 3; i++ {
				got, err := VirtiofsdFlavorOfBinary(ctx, bin, cache)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), bin) {
						t.Fatalf("err = %v, want one naming %s", err, bin)
					}
					continue
				}
				if err != nil || got != tt.want {
					t.Fatalf("call %d: %v, %v; want %v", i, got, err, tt.want)
				}
			}
			if n := runs(t, dir); n != tt.wantRuns {
				t.Errorf("--help ran %d times, want %d", n, tt.wantRuns)
			}
		})
	}

	// A binary that changes (an upgrade) is probed again.
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if err := os.Mkdir(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := fakeVirtiofsd(t, dir, "-o source=PATH")
	if f, err := VirtiofsdFlavorOfBinary(ctx, bin, cache); err != nil || f != VirtiofsdC {
		t.Fatalf("first: %v, %v", f, err)
	}
	bin = fakeVirtiofsd(t, dir, "--shared-dir <DIR> (a newer, longer help)")
	if f, err := VirtiofsdFlavorOfBinary(ctx, bin, cache); err != nil || f != VirtiofsdRust {
		t.Errorf("after the upgrade: %v, %v; want rust", f, err)
	}
	if n := runs(t, dir); n != 2 {
		t.Errorf("--help ran %d times, want 2", n)
	}
}
