package guestagent

import (
	"errors"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want mountOpts
	}{
		{"empty", nil, mountOpts{}},
		{"podman proc", []string{"nosuid", "noexec", "nodev"},
			mountOpts{Flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV}},
		{"tmpfs with data", []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			mountOpts{Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: []string{"mode=755", "size=65536k"}}},
		{"devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
			mountOpts{Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: []string{"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}}},
		{"sysfs ro", []string{"nosuid", "noexec", "nodev", "ro"},
			mountOpts{Flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV | unix.MS_RDONLY}},
		{"later rw clears ro", []string{"ro", "rw"}, mountOpts{}},
		{"later ro wins", []string{"rw", "ro"}, mountOpts{Flags: unix.MS_RDONLY}},
		{"suid clears nosuid", []string{"nosuid", "suid", "exec", "dev"}, mountOpts{}},
		{"bind", []string{"bind", "ro"}, mountOpts{Flags: unix.MS_BIND | unix.MS_RDONLY}},
		{"rbind with propagation", []string{"rbind", "rprivate", "slave"},
			mountOpts{Flags: unix.MS_BIND | unix.MS_REC, Propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC, unix.MS_SLAVE}}},
		{"relatime and norelatime", []string{"relatime", "noatime", "norelatime"}, mountOpts{Flags: unix.MS_NOATIME}},
		{"defaults and empty", []string{"defaults", ""}, mountOpts{}},
		{"tmpcopyup", []string{"rw", "tmpcopyup", "nosuid"}, mountOpts{Flags: unix.MS_NOSUID, CopyUp: true}},
		{"rro with rbind", []string{"rbind", "rprivate", "rro"},
			mountOpts{Flags: unix.MS_BIND | unix.MS_REC, Propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC}, RecSet: unix.MOUNT_ATTR_RDONLY}},
		{"recursive set and clear", []string{"rnosuid", "rexec", "rnodev"},
			mountOpts{RecSet: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, RecClr: unix.MOUNT_ATTR_NOEXEC}},
		{"recursive atime replaces the mode", []string{"rnoatime"},
			mountOpts{RecSet: unix.MOUNT_ATTR_NOATIME, RecClr: unix.MOUNT_ATTR__ATIME}},
		{"ro is not rro", []string{"rbind", "ro"}, mountOpts{Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY}},
		{"9p data keeps order", []string{"trans=virtio", "version=9p2000.L", "msize=262144"},
			mountOpts{Data: []string{"trans=virtio", "version=9p2000.L", "msize=262144"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountOptions(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseMountOptions(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
	if got := (mountOpts{Data: []string{"mode=755", "size=1m"}}).DataString(); got != "mode=755,size=1m" {
		t.Errorf("DataString = %q", got)
	}
}

func TestParseMountOptionsUnsupported(t *testing.T) {
	for _, opt := range []string{"idmap", "ridmap"} {
		_, err := parseMountOptions([]string{"nosuid", opt})
		if !errors.Is(err, ErrNotSupported) {
			t.Errorf("option %q: got %v, want ErrNotSupported", opt, err)
		}
	}
}
