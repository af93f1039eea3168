// Package ociarchive writes OCI image layouts as tar archives, the input of
// `ctr images import`: images made of uncompressed layers, named by the
// annotation io.containerd.image.name. The tests and the conformance stand-in
// images use it instead of a registry.
package ociarchive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultPath is the PATH of an image whose Env does not set one.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image is one image of an archive.
type Image struct {
	Name            string   // e.g. "localhost/x:latest"
	Layers          [][]byte // uncompressed layer tars, the base first
	Entrypoint, Cmd []string
	Env             []string // none: DefaultPath
	User            string   // the config's User ("" is root)
	WorkingDir      string   // "": /
}

// descriptor is an OCI content descriptor (image-spec descriptor.md).
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// blob is one content-addressed file of the layout.
type blob struct {
	data []byte
	desc descriptor
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{data: data, desc: descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}}
}

func jsonBlob(mediaType string, v any) (blob, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return newBlob(mediaType, b), nil
}

// Write writes an OCI image layout (oci-layout, index.json, blobs/sha256/…)
// as a tar at path: a config and a manifest per image, for linux/amd64, each
// named in the index by io.containerd.image.name. Layers that images share
// are stored once.
func Write(path string, images []Image) error {
	var blobs []blob
	var manifests []descriptor
	for _, img := range images {
		var layers []descriptor
		var diffIDs []string
		for _, data := range img.Layers {
			layer := newBlob("application/vnd.oci.image.layer.v1.tar", data)
			blobs = append(blobs, layer)
			layers = append(layers, layer.desc)
			diffIDs = append(diffIDs, layer.desc.Digest) // an uncompressed layer's diff ID is its digest
		}
		env, wd := img.Env, img.WorkingDir
		if len(env) == 0 {
			env = []string{DefaultPath}
		}
		if wd == "" {
			wd = "/"
		}
		cfg := map[string]any{"Env": env, "Entrypoint": img.Entrypoint, "Cmd": img.Cmd, "WorkingDir": wd}
		if img.User != "" {
			cfg["User"] = img.User
		}
		config, err := jsonBlob("application/vnd.oci.image.config.v1+json", map[string]any{
			"architecture": "amd64",
			"os":           "linux",
			"config":       cfg,
			"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		if err != nil {
			return err
		}
		manifest, err := jsonBlob("application/vnd.oci.image.manifest.v1+json", map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        config.desc,
			"layers":        layers,
		})
		if err != nil {
			return err
		}
		blobs = append(blobs, config, manifest)
		desc := manifest.desc
		desc.Annotations = map[string]string{
			"io.containerd.image.name":          img.Name,
			"org.opencontainers.image.ref.name": "latest",
		}
		desc.Platform = map[string]string{"architecture": "amd64", "os": "linux"}
		manifests = append(manifests, desc)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     manifests,
	})
	if err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err = add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	if err == nil {
		err = add("index.json", index)
	}
	written := map[string]bool{}
	for _, b := range blobs {
		if err != nil || written[b.desc.Digest] {
			continue
		}
		written[b.desc.Digest] = true
		err = add("blobs/sha256/"+b.desc.Digest[len("sha256:"):], b.data)
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing image archive %s: %w", path, err)
	}
	return nil
}

// DirLayer is the tar of the tree at root (owners, modes, symlinks, hard
// links, device nodes).
func DirLayer(root string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	links := map[[2]uint64]string{} // device and inode of a file with several links: its first name
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var target string
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name = filepath.Clean(hdr.Name) + "/"
			if rel == "." {
				hdr.Name = "./"
			}
		}
		hdr.Uname, hdr.Gname = "", ""
		st, _ := info.Sys().(*syscall.Stat_t)
		if st != nil && info.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// File is one entry of a layer made by FileLayer, owned by root.
type File struct {
	Name string      // relative path, e.g. "usr/sbin/nginx"
	Mode fs.FileMode // permissions with fs.ModeDir, fs.ModeSymlink, fs.ModeSetuid...
	Data []byte      // a regular file's content, or a symlink's target
}

// FileLayer is a layer tar of files, in the order given (a directory before
// what it holds).
func FileLayer(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: "./" + f.Name, Mode: int64(f.Mode.Perm()), Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
		if f.Mode&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		if f.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		switch {
		case f.Mode.IsDir():
			hdr.Name, hdr.Typeflag, hdr.Size = hdr.Name+"/", tar.TypeDir, 0
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, string(f.Data), 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
