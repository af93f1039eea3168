package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func startCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "run the process of a created container",
		ArgsUsage: "<container-id>",
		Action: func(ctx *cli.Context) error {
			id, err := oneID(ctx)
			if err != nil {
				return err
			}
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			return runtime.Start(context.Background(), c, id)
		},
	}
}
