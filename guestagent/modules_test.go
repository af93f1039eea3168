package guestagent

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sampleLoadOrder = `# generated
virtio_ring.ko mmio,pci
virtio.ko mmio,pci
virtio_mmio.ko mmio

virtio_pci.ko pci
virtio_blk.ko blk
crc32c_generic.ko btrfs
btrfs.ko btrfs
virtio_console.ko console
`

func TestParseLoadOrderAndSelect(t *testing.T) {
	entries, err := parseLoadOrder(strings.NewReader(sampleLoadOrder))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 8 {
		t.Fatalf("got %d entries, want 8: %+v", len(entries), entries)
	}
	if got, want := entries[0], (moduleEntry{"virtio_ring.ko", []string{"mmio", "pci"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("entry 0 = %+v, want %+v", got, want)
	}
	files := func(es []moduleEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.File)
		}
		return out
	}
	tests := []struct {
		name   string
		all    bool
		groups []string
		want   []string
	}{
		{"all", true, nil, files(entries)},
		{"none", false, nil, nil},
		{"mmio blk btrfs console", false, []string{"mmio", "blk", "btrfs", "console"},
			[]string{"virtio_ring.ko", "virtio.ko", "virtio_mmio.ko", "virtio_blk.ko", "crc32c_generic.ko", "btrfs.ko", "virtio_console.ko"}},
		{"pci only, order kept", false, []string{"pci"}, []string{"virtio_ring.ko", "virtio.ko", "virtio_pci.ko"}},
		{"group order irrelevant", false, []string{"console", "mmio"},
			[]string{"virtio_ring.ko", "virtio.ko", "virtio_mmio.ko", "virtio_console.ko"}},
		{"unknown group", false, []string{"9p"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := files(selectModules(entries, tt.all, tt.groups)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseLoadOrderErrors(t *testing.T) {
	for _, in := range []string{
		"virtio.ko",
		"virtio.ko mmio extra",
		"virtio mmio",
		"../x.ko mmio",
		"virtio.ko ,",
	} {
		if _, err := parseLoadOrder(strings.NewReader(in)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("parseLoadOrder(%q) = %v, want ErrInvalidArgument", in, err)
		}
	}
}

func TestLoadModules(t *testing.T) {
	entries := []moduleEntry{{"a.ko", []string{"g"}}, {"b.ko", []string{"g"}}, {"c.ko", []string{"g"}}, {"d.ko", []string{"g"}}}
	var loaded, timed []string
	errBad := errors.New("Unknown symbol in module")
	load := func(path string) error {
		loaded = append(loaded, path)
		switch filepath.Base(path) {
		case "b.ko":
			return errBad
		case "d.ko":
			return errModuleLive
		}
		return nil
	}
	err := loadModules("/lib/modules", entries, load, func(file string, _ time.Duration) { timed = append(timed, file) })
	if want := []string{"/lib/modules/a.ko", "/lib/modules/b.ko", "/lib/modules/c.ko", "/lib/modules/d.ko"}; !reflect.DeepEqual(loaded, want) {
		t.Errorf("loaded %v, want %v (order kept, going on after a failure)", loaded, want)
	}
	// A failed load and a module the kernel had live are not reported as loaded.
	if want := []string{"a.ko", "c.ko"}; !reflect.DeepEqual(timed, want) {
		t.Errorf("reported as loaded %v, want %v", timed, want)
	}
	if strings.Contains(err.Error(), "d.ko") {
		t.Errorf("error %v names the live module", err)
	}
	if !errors.Is(err, errBad) || !strings.Contains(err.Error(), `"b.ko"`) {
		t.Errorf("error %v should wrap the failure and name b.ko", err)
	}
	if strings.Contains(err.Error(), "a.ko") || strings.Contains(err.Error(), "c.ko") {
		t.Errorf("error %v names modules that loaded", err)
	}
}
