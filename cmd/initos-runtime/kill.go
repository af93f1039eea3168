package main

import (
	"context"
	"fmt"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal (default SIGTERM) to the container's process",
		ArgsUsage: "<container-id> [signal]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "send the signal to all processes of the container"},
		},
		Action: func(ctx *cli.Context) error {
			if ctx.NArg() < 1 || ctx.NArg() > 2 {
				return fmt.Errorf("kill: expected a container id and an optional signal, got %d arguments", ctx.NArg())
			}
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			sig := syscall.SIGTERM
			if ctx.NArg() == 2 {
				if sig, err = runtime.ParseSignal(ctx.Args().Get(1)); err != nil {
					return err
				}
			}
			return runtime.Kill(context.Background(), c, ctx.Args().First(), sig, ctx.Bool("all"))
		},
	}
}
