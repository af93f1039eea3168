package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "report what this host has and lacks to run containers in VMs",
		Action: func(ctx *cli.Context) error {
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			results, ok := runtime.Check(c)
			for _, r := range results {
				mark := "ok"
				switch {
				case !r.OK && r.Required:
					mark = "MISSING"
				case !r.OK:
					mark = "no"
				}
				fmt.Fprintf(ctx.App.Writer, "%-17s %-8s %s\n", r.Name, mark, r.Detail)
			}
			if !ok {
				return cli.Exit("initos-runtime: this host cannot run containers yet (see MISSING above)", 1)
			}
			return nil
		},
	}
}
