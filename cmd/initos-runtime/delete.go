package main

import (
	"context"
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a stopped container: its VM's disk image and its state",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "stop the container's VM first if it still runs"},
		},
		Action: func(ctx *cli.Context) error {
			id, err := oneID(ctx)
			if err != nil {
				return err
			}
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			err = runtime.Delete(context.Background(), c, id, ctx.Bool("force"), ctx.App.ErrWriter)
			if ctx.Bool("force") && errors.Is(err, runtime.ErrNotExist) {
				// runc: delete --force of a container that does not exist
				// succeeds.
				return nil
			}
			return err
		},
	}
}
