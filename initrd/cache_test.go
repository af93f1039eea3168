package initrd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPruneCache(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	type file struct {
		name    string
		content string
		age     time.Duration
	}
	for _, tc := range []struct {
		name  string
		files []file
		keep  []string
		want  []string // what is left
	}{
		{
			name: "a used stamp keeps its initrd, however old the file",
			files: []file{
				{"initrd-stat-a", "initrd-a.cpio", 2 * day},
				{"initrd-a.cpio", "", 90 * day},
			},
			want: []string{"initrd-a.cpio", "initrd-stat-a"},
		},
		{
			name: "an unused stamp goes, and the initrd only it named",
			files: []file{
				{"initrd-stat-old", "initrd-old.cpio", 31 * day},
				{"initrd-old.cpio", "", 31 * day},
				{"initrd-stat-new", "initrd-new.cpio", time.Minute},
				{"initrd-new.cpio", "", time.Minute},
			},
			want: []string{"initrd-new.cpio", "initrd-stat-new"},
		},
		{
			name: "an initrd an unused stamp and a used one both name stays",
			files: []file{
				{"initrd-stat-old", "initrd-same.cpio", 40 * day},
				{"initrd-stat-new", "initrd-same.cpio", day},
				{"initrd-same.cpio", "", 40 * day},
			},
			want: []string{"initrd-same.cpio", "initrd-stat-new"},
		},
		{
			name: "kept names stay whatever their age",
			files: []file{
				{"initrd-stat-k", "initrd-k.cpio", 40 * day},
				{"initrd-k.cpio", "", 40 * day},
				{"modindex-k.gz", "", 40 * day},
			},
			keep: []string{"initrd-stat-k", "modindex-k.gz"},
			want: []string{"initrd-k.cpio", "initrd-stat-k", "modindex-k.gz"},
		},
		{
			name: "a file no stamp names stays an hour, for the stamp its writer writes next",
			files: []file{
				{"initrd-fresh.cpio", "", 10 * time.Minute},
				{"initrd-orphan.cpio", "", 2 * time.Hour},
				{"vmlinux-6.1.0-1-amd64-fresh", "", 10 * time.Minute},
				{"vmlinux-6.1.0-1-amd64-orphan", "", 2 * time.Hour},
			},
			want: []string{"initrd-fresh.cpio", "vmlinux-6.1.0-1-amd64-fresh"},
		},
		{
			name: "vmlinux stamps as initrd stamps",
			files: []file{
				{"vmlinux-stat-used", "vmlinux-6.1.0-2-amd64-b", 3 * day},
				{"vmlinux-6.1.0-2-amd64-b", "", 60 * day},
				{"vmlinux-stat-unused", "vmlinux-6.1.0-1-amd64-a", 31 * day},
				{"vmlinux-6.1.0-1-amd64-a", "", 60 * day},
			},
			want: []string{"vmlinux-6.1.0-2-amd64-b", "vmlinux-stat-used"},
		},
		{
			name: "module indexes and alias caches go once a month old",
			files: []file{
				{"modindex-old.gz", "", 31 * day},
				{"modindex-new.gz", "", 2 * time.Hour},
				{"modaliases-old", "", 31 * day},
				{"modaliases-new", "", 2 * day},
			},
			want: []string{"modaliases-new", "modindex-new.gz"},
		},
		{
			name: "other files and writes in progress are not the cache's to prune",
			files: []file{
				{"virtiofsd-flavor-x", "", 90 * day},
				{".initrd-x.cpio.123.tmp", "", 2 * time.Hour},
				{"notes", "", 90 * day},
			},
			want: []string{".initrd-x.cpio.123.tmp", "notes", "virtiofsd-flavor-x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(dir, f.name)
				if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, now.Add(-f.age), now.Add(-f.age)); err != nil {
					t.Fatal(err)
				}
			}
			if err := pruneCache(dir, tc.keep, now); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); !slices.Equal(got, tc.want) {
				t.Errorf("left %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadStampFile(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	write := func(name, content string, age time.Duration) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("initrd-a.cpio", "", time.Hour)
	if err := os.Mkdir(filepath.Join(dir, "initrd-dir.cpio"), 0o755); err != nil {
		t.Fatal(err)
	}
	mtime := func(p string) time.Time {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	for _, tc := range []struct {
		name, content string
		age           time.Duration
		ok, refreshed bool
	}{
		{"used today: found, left as it is", "initrd-a.cpio", time.Hour, true, false},
		{"used two days ago: found, refreshed", "initrd-a.cpio", 48 * time.Hour, true, true},
		{"names a missing file", "initrd-gone.cpio", 48 * time.Hour, false, false},
		{"names a directory", "initrd-dir.cpio", time.Hour, false, false},
		{"names a path", "../initrd-a.cpio", time.Hour, false, false},
		{"names another kind", "vmlinux-x", time.Hour, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write("initrd-stat-x", tc.content, tc.age)
			before := mtime(p)
			got, ok := readStampFile(dir, "initrd-stat-x", "initrd-", ".cpio", now)
			if ok != tc.ok || ok && got != filepath.Join(dir, tc.content) {
				t.Fatalf("readStampFile = %q, %v; want %v", got, ok, tc.ok)
			}
			if refreshed := !mtime(p).Equal(before); refreshed != tc.refreshed {
				t.Errorf("refreshed %v, want %v", refreshed, tc.refreshed)
			}
		})
	}
	if _, ok := readStampFile(dir, "initrd-stat-none", "initrd-", ".cpio", now); ok {
		t.Error("a missing stamp found something")
	}
}

// TestBuildPrunes: a build of new inputs removes the initrd (and its
// stamp) that no start has used for a month, and keeps a used one.
func TestBuildPrunes(t *testing.T) {
	k := fakeKernel(t)
	if err := os.WriteFile(filepath.Join(k.ModulesDir, "modules.order"), []byte("kernel/fs/btrfs/btrfs.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := writeAgent(t, []byte("\x7fELF pretend agent"))
	cache := t.TempDir()
	build := func() string {
		t.Helper()
		p, err := Build(Options{Kernel: k, AgentPath: agent, HelperPath: helperOf(agent), CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	stampOf := func(initrd string) string {
		t.Helper()
		entries, _ := os.ReadDir(cache)
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(cache, e.Name())); err == nil && isStamp(e.Name()) && string(b) == filepath.Base(initrd) {
				return filepath.Join(cache, e.Name())
			}
		}
		t.Fatalf("no stamp names %s", initrd)
		return ""
	}
	age := func(p string, d time.Duration) {
		t.Helper()
		old := time.Now().Add(-d)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	newAgent := func(content string) {
		t.Helper()
		tmp := agent + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, agent); err != nil {
			t.Fatal(err)
		}
	}
	p1 := build()
	s1 := stampOf(p1)
	age(p1, 40*24*time.Hour)
	age(s1, 40*24*time.Hour)

	newAgent("\x7fELF the next agent")
	p2 := build()
	if _, err := os.Stat(p1); err == nil {
		t.Errorf("%s, unused for 40 days, is left after a new build", p1)
	}
	if _, err := os.Stat(s1); err == nil {
		t.Errorf("its stamp %s is left", s1)
	}
	// p2 used yesterday-ish (its stamp refreshed by a start): kept by the
	// next build.
	age(p2, 40*24*time.Hour)
	newAgent("\x7fELF yet another agent")
	p3 := build()
	if _, err := os.Stat(p2); err != nil {
		t.Errorf("%s, used a moment ago, was pruned: %v", p2, err)
	}
	if p3 == p2 {
		t.Fatal("a new agent gave the same initrd")
	}
}

// TestRemoveKernel: what the cache made for a release goes (its vmlinux,
// initrds, module index and alias table, and the stamps naming them);
// another release's stays, one whose name extends it too, and files of an
// older runtime, whose names carry no release.
func TestRemoveKernel(t *testing.T) {
	const release = "6.1.0-10-amd64"
	for _, tc := range []struct {
		name  string
		files map[string]string // name: content
		want  []string          // what is left
	}{
		{
			name: "the release's files and the stamps naming them go",
			files: map[string]string{
				"vmlinux-6.1.0-10-amd64-aaaa":           "",
				"vmlinux-6.1.0-10-amd64-bbbb":           "",
				"vmlinux-stat-1":                        "vmlinux-6.1.0-10-amd64-aaaa",
				"vmlinux-stat-2":                        "vmlinux-6.1.0-10-amd64-bbbb",
				"initrd-6.1.0-10-amd64-0a1b.cpio":       "",
				"initrd-stat-1":                         "initrd-6.1.0-10-amd64-0a1b.cpio",
				"modindex-6.1.0-10-amd64-77.gz":         "",
				"modaliases-6.1.0-10-amd64-88":          "",
				"vmlinux-6.1.0-9-amd64-cccc":            "",
				"vmlinux-stat-3":                        "vmlinux-6.1.0-9-amd64-cccc",
				"initrd-6.1.0-9-amd64-0a1b.cpio":        "",
				"initrd-stat-2":                         "initrd-6.1.0-9-amd64-0a1b.cpio",
				"modindex-6.1.0-9-amd64-77.gz":          "",
				"initrd-ffff.cpio":                      "",
				"initrd-stat-3":                         "initrd-ffff.cpio",
				"modaliases-99":                         "",
				"vmlinux-6.1.0-10-amd64x-dddd":          "",
				"vmlinux-6.1.0-10-amd64-rt-dddd":        "",
				"initrd-6.1.0-10-amd64-custom-0a1.cpio": "",
			},
			want: []string{"initrd-6.1.0-10-amd64-custom-0a1.cpio", "initrd-6.1.0-9-amd64-0a1b.cpio", "initrd-ffff.cpio",
				"initrd-stat-2", "initrd-stat-3", "modaliases-99", "modindex-6.1.0-9-amd64-77.gz",
				"vmlinux-6.1.0-10-amd64-rt-dddd", "vmlinux-6.1.0-10-amd64x-dddd", "vmlinux-6.1.0-9-amd64-cccc", "vmlinux-stat-3"},
		},
		{
			name:  "a stamp of the release whose file is already gone goes too",
			files: map[string]string{"vmlinux-stat-1": "vmlinux-6.1.0-10-amd64-aaaa", "initrd-stat-1": "initrd-6.1.0-10-amd64-0a.cpio"},
		},
		{
			name:  "another release's stamp stays",
			files: map[string]string{"vmlinux-stat-1": "vmlinux-6.1.0-11-amd64-aaaa"},
			want:  []string{"vmlinux-stat-1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := RemoveKernel(dir, release); err != nil {
				t.Fatal(err)
			}
			if left := dirNames(t, dir); !slices.Equal(left, tc.want) {
				t.Errorf("left %q, want %q", left, tc.want)
			}
		})
	}
	t.Run("no cache", func(t *testing.T) {
		if err := RemoveKernel(filepath.Join(t.TempDir(), "none"), release); err != nil {
			t.Errorf("RemoveKernel without a cache: %v", err)
		}
	})
	t.Run("a cache that cannot be read", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := RemoveKernel(f, release); err == nil || !strings.Contains(err.Error(), release) {
			t.Errorf("RemoveKernel of a file = %v, want an error naming the release", err)
		}
	})
}

// dirNames lists dir's entries by name, in order.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
