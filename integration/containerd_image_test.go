package integration

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/initos-runtime/initos-runtime/internal/ociarchive"
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

// writeImageArchive writes the OCI image layout tar of containerdImage and
// pauseImage at path: one uncompressed layer of rootfs each.
func writeImageArchive(path, rootfs string) error {
	layer, err := ociarchive.DirLayer(rootfs)
	if err != nil {
		return fmt.Errorf("image layer of %s: %w", rootfs, err)
	}
	return ociarchive.Write(path, []ociarchive.Image{
		{Name: containerdImage, Layers: [][]byte{layer}, Cmd: []string{"sh"}},
		{Name: pauseImage, Layers: [][]byte{layer}, Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"}},
	})
}
