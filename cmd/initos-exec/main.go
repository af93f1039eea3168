//go:build linux

// Command initos-exec is the process helper of the guest agent: the
// initrd's /sbin/initos-exec, which the agent starts for each container
// process with the descriptors package procinit describes. Build it static
// (CGO_ENABLED=0).
package main

import (
	"fmt"
	"os"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

func main() {
	if !procinit.IsHelper() {
		fmt.Fprintf(os.Stderr, "%s: the guest agent's process helper (argv[0] %q), started by the agent with its descriptors; not a command to run\n", os.Args[0], procinit.Arg0)
		os.Exit(2)
	}
	os.Exit(procinit.Main())
}
