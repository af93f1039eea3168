// Command containerd-shim-initos-v2 is the containerd shim of
// initos-runtime: containerd runs it for --runtime io.containerd.initos.v2.
package main

import (
	"context"
	"os"

	cshim "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/initos-runtime/initos-runtime/shim"
)

func main() {
	if shim.IsView() {
		// A task's view process (shim/view_linux.go), not a shim.
		os.Exit(shim.RunView())
	}
	shim.Register()
	cshim.RunShim(context.Background(), shim.NewManager(shim.RuntimeName), shim.BinaryOpts)
}
