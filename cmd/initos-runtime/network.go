package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "the seed's per-host bridge for containers in new network namespaces",
		Subcommands: []*cli.Command{{
			Name:  "setup",
			Usage: "create the bridge (config bridge, default " + runtime.DefaultBridge + ") with the .1 address of its /24; idempotent",
			Action: func(ctx *cli.Context) error {
				c, err := loadConfig(ctx)
				if err != nil {
					return err
				}
				gw, err := runtime.SetupBridge(c)
				if err != nil {
					return err
				}
				fmt.Fprintf(ctx.App.Writer, "bridge %s %s; hosts file for dnsmasq --hostsdir: %s\n", c.Bridge, gw.String(), c.HostsFile())
				return nil
			},
		}},
	}
}
