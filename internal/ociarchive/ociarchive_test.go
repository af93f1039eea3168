package ociarchive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readTar is the regular files of a tar by name.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, hdrs := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name], hdrs[hdr.Name] = b, hdr
	}
}

func TestWriteSharesLayersAndNamesImages(t *testing.T) {
	base, err := FileLayer([]File{{Name: "bin", Mode: fs.ModeDir | 0o755}, {Name: "bin/x", Mode: fs.ModeSetuid | 0o755, Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	_, hdrs := readTar(t, strings.NewReader(string(base)))
	if h := hdrs["./bin/x"]; h == nil || h.Mode != 0o4755 || h.Uid != 0 {
		t.Fatalf("setuid file header: %+v", h)
	}
	if h := hdrs["./bin/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Fatalf("directory header: %+v", h)
	}
	path := filepath.Join(t.TempDir(), "images.tar")
	err = Write(path, []Image{
		{Name: "example.org/a:1", Layers: [][]byte{base}, Cmd: []string{"sh"}},
		{Name: "example.org/b:2", Layers: [][]byte{base}, User: "1000", Env: []string{"PATH=/bin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, _ := readTar(t, f)
	var index struct{ Manifests []descriptor }
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 2 || index.Manifests[1].Annotations["io.containerd.image.name"] != "example.org/b:2" {
		t.Fatalf("index: %+v", index)
	}
	// One layer, two configs, two manifests.
	blobs := 0
	for name := range files {
		if strings.HasPrefix(name, "blobs/sha256/") {
			blobs++
		}
	}
	if blobs != 5 {
		t.Fatalf("%d blobs, want 5 (the shared layer once)", blobs)
	}
	var manifest struct{ Config descriptor }
	if err := json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(index.Manifests[1].Digest, "sha256:")], &manifest); err != nil {
		t.Fatal(err)
	}
	var config struct {
		Config struct {
			User       string
			Env        []string
			WorkingDir string
		}
	}
	if err := json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(manifest.Config.Digest, "sha256:")], &config); err != nil {
		t.Fatal(err)
	}
	if c := config.Config; c.User != "1000" || len(c.Env) != 1 || c.Env[0] != "PATH=/bin" || c.WorkingDir != "/" {
		t.Fatalf("config: %+v", c)
	}
}

func TestDirLayerKeepsHardLinks(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "a"), []byte("data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	layer, err := DirLayer(root)
	if err != nil {
		t.Fatal(err)
	}
	files, hdrs := readTar(t, strings.NewReader(string(layer)))
	if string(files["./a"]) != "data" || hdrs["./b"].Typeflag != tar.TypeLink || hdrs["./b"].Linkname != "./a" {
		t.Fatalf("headers: a %+v, b %+v", hdrs["./a"], hdrs["./b"])
	}
}
