package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// specCommand is runc's spec: write a starter config.json into the bundle.
func specCommand() *cli.Command {
	return &cli.Command{
		Name:  "spec",
		Usage: "create a new specification file",
		Description: `The spec command creates the new specification file named "config.json" for
the bundle, like runc spec. It is a starter file: its args run "sh", which
the root filesystem must contain. Fields that a VM does not apply
(capabilities, the device cgroup, masked and read-only paths) are left out.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory"},
			&cli.BoolFlag{Name: "rootless", Usage: "generate a configuration for a rootless container"},
		},
		Action: func(ctx *cli.Context) error {
			if ctx.NArg() != 0 {
				return fmt.Errorf("spec: expected no arguments, got %d", ctx.NArg())
			}
			return runtime.WriteSpec(ctx.String("bundle"), runtime.DefaultSpec(ctx.Bool("rootless")))
		},
	}
}
