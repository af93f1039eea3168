package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func startCommand() *cli.Command {
	return idCommand("start", "run the process of a created container", runtime.Start)
}

// idCommand is a verb that takes one container id and no flags of its own.
func idCommand(name, usage string, action func(context.Context, runtime.Config, string) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
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
			return action(context.Background(), c, id)
		},
	}
}
