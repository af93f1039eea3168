//go:build linux

// Command initos-agent is the guest agent: /init (PID 1) of the initrd that
// initos-runtime boots each container's microVM with. Everything happens in
// package guestagent; build it static (CGO_ENABLED=0).
package main

import "github.com/initos-runtime/initos-runtime/guestagent"

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	guestagent.Main(version)
}
