package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "list the processes running in the container's VM (guest pids)",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
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
			procs, err := runtime.Processes(context.Background(), c, id)
			if err != nil {
				return err
			}
			w := ctx.App.Writer
			switch ctx.String("format") {
			case "json":
				pids := make([]int, 0, len(procs))
				for _, p := range procs {
					pids = append(pids, int(p.Pid))
				}
				return json.NewEncoder(w).Encode(pids)
			case "table":
				tw := tabwriter.NewWriter(w, 6, 1, 2, ' ', 0)
				fmt.Fprint(tw, "PID\tPPID\tCMD\n")
				for _, p := range procs {
					cmd := strings.Join(p.Args, " ")
					if cmd == "" {
						cmd = "[" + p.Comm + "]"
					}
					fmt.Fprintf(tw, "%d\t%d\t%s\n", p.Pid, p.Ppid, cmd)
				}
				return tw.Flush()
			}
			return fmt.Errorf("invalid format option %q: want table or json", ctx.String("format"))
		},
	}
}
