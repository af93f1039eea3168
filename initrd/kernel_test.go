package initrd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindKernel(t *testing.T) {
	tests := []struct {
		name    string
		images  []string // boot/vmlinuz-<x>
		modules []string // <moduleRoot>/<release> directories
		want    string   // release; "" means ErrNoKernel
	}{
		{"one", []string{"6.1.0-56-amd64"}, []string{"lib/modules/6.1.0-56-amd64"}, "6.1.0-56-amd64"},
		{"highest numerically", []string{"6.1.0-9-amd64", "6.1.0-10-amd64", "5.19.0-1-amd64"},
			[]string{"lib/modules/6.1.0-9-amd64", "lib/modules/6.1.0-10-amd64", "lib/modules/5.19.0-1-amd64"}, "6.1.0-10-amd64"},
		{"image without modules skipped", []string{"6.1.0-9-amd64", "6.2.0-1-amd64"}, []string{"lib/modules/6.1.0-9-amd64"}, "6.1.0-9-amd64"},
		{"merged usr", []string{"6.12.0-1-amd64"}, []string{"usr/lib/modules/6.12.0-1-amd64"}, "6.12.0-1-amd64"},
		{"modules without image", nil, []string{"lib/modules/6.1.0-9-amd64"}, ""},
		{"empty", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "boot"), 0o755)
			for _, img := range tt.images {
				if err := os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+img), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range tt.modules {
				if err := os.MkdirAll(filepath.Join(root, m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			k, err := FindKernel(root)
			if tt.want == "" {
				if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), root) {
					t.Fatalf("got %v, %v; want ErrNoKernel naming %s", k, err, root)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Release != tt.want || k.Vmlinuz != filepath.Join(root, "boot", "vmlinuz-"+tt.want) ||
				filepath.Base(k.ModulesDir) != tt.want || !strings.HasPrefix(k.ModulesDir, root) {
				t.Errorf("got %+v, want release %s", *k, tt.want)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-10-amd64", "6.1.0-9-amd64", 1},
		{"6.10.0-1-amd64", "6.9.0-1-amd64", 1},
		{"6.1.0-56-amd64", "6.1.0-56-amd64", 0},
		{"6.1.0-056-amd64", "6.1.0-56-amd64", 0},
		{"6.1.0-56-amd64", "6.1.0-56", 1},
		{"6.1.0-56-cloud-amd64", "6.1.0-56-amd64", 1},
		{"5.10.0-30-amd64", "6.1.0-1-amd64", -1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}
