package main

import (
	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func pauseCommand() *cli.Command {
	return idCommand("pause", "pause the container's VM", runtime.Pause)
}

func resumeCommand() *cli.Command {
	return idCommand("resume", "resume the container's paused VM", runtime.Resume)
}
