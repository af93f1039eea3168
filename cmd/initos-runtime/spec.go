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
the root filesystem must contain. The device cgroup rules, which the guest
does not enforce yet, are left out. There is no rootless variant.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory"},
			&cli.BoolFlag{Name: "rootless", Usage: "refused: initos-runtime has no rootless mode"},
		},
		Action: func(ctx *cli.Context) error {
			if ctx.NArg() != 0 {
				return fmt.Errorf("spec: expected no arguments, got %d", ctx.NArg())
			}
			if ctx.Bool("rootless") {
				// runc's rootless spec asks for a user namespace, which
				// the runtime refuses (bundle.Load).
				return fmt.Errorf("spec --rootless: initos-runtime has no rootless mode: it runs as root on the host and refuses user namespaces; use spec without --rootless")
			}
			return runtime.WriteSpec(ctx.String("bundle"), runtime.DefaultSpec())
		},
	}
}
