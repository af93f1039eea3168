package integration

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
	"sync"
	"syscall"
)

// The images every private containerd gets (newContainerd), in the
// namespaces of nerdctl ("default") and CRI ("k8s.io"). Both are the shared
// busybox root filesystem (TestMain's env.busybox) as one layer.
const (
	// containerdImage runs its arguments; without any, sh (as Docker's busybox).
	containerdImage = "localhost/initos-busybox:latest"
	// pauseImage is CRI's sandbox (pause) image: it sleeps until SIGTERM or
	// SIGINT (then exits 0) or SIGKILL, also as PID 1 of its PID namespace.
	pauseImage = "localhost/initos-pause:latest"
)

// imageArchive is the OCI image layout tar of both images, built once per
// test binary into TestMain's work directory.
var imageArchive struct {
	once sync.Once
	path string
	err  error
}

// containerdImages returns the path of the OCI image layout tar holding
// containerdImage and pauseImage, building it on first use.
func containerdImages() (string, error) {
	imageArchive.once.Do(func() {
		path := filepath.Join(filepath.Dir(env.config), "containerd-images.tar")
		imageArchive.err = writeImageArchive(path, filepath.Join(env.busybox, "rootfs"))
		imageArchive.path = path
	})
	return imageArchive.path, imageArchive.err
}

// ociDescriptor is an OCI content descriptor (image-spec descriptor.md).
type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// blob is one content-addressed file of the layout.
type blob struct {
	data []byte
	desc ociDescriptor
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{data: data, desc: ociDescriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}}
}

func jsonBlob(mediaType string, v any) (blob, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return newBlob(mediaType, b), nil
}

// writeImageArchive writes an OCI image layout (oci-layout, index.json,
// blobs/sha256/…) as a tar at path: one uncompressed layer of rootfs, and a
// config and manifest per image, named in the index by the annotation
// io.containerd.image.name (what `ctr images import` names them by).
func writeImageArchive(path, rootfs string) error {
	layerData, err := layerTar(rootfs)
	if err != nil {
		return fmt.Errorf("image layer of %s: %w", rootfs, err)
	}
	layer := newBlob("application/vnd.oci.image.layer.v1.tar", layerData)
	diffID := layer.desc.Digest // an uncompressed layer's diff ID is its digest
	blobs := []blob{layer}
	var manifests []ociDescriptor
	for _, img := range []struct {
		name            string
		entrypoint, cmd []string
	}{
		{containerdImage, nil, []string{"sh"}},
		{pauseImage, []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"}, nil},
	} {
		config, err := jsonBlob("application/vnd.oci.image.config.v1+json", map[string]any{
			"architecture": "amd64",
			"os":           "linux",
			"config": map[string]any{
				"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				"Entrypoint": img.entrypoint,
				"Cmd":        img.cmd,
				"WorkingDir": "/",
			},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		})
		if err != nil {
			return err
		}
		manifest, err := jsonBlob("application/vnd.oci.image.manifest.v1+json", map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        config.desc,
			"layers":        []ociDescriptor{layer.desc},
		})
		if err != nil {
			return err
		}
		blobs = append(blobs, config, manifest)
		desc := manifest.desc
		desc.Annotations = map[string]string{
			"io.containerd.image.name":          img.name,
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

// layerTar is the tar of the tree at root (owners, modes, symlinks, hard
// links, device nodes).
func layerTar(root string) ([]byte, error) {
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
