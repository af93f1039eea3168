package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list containers under the state root",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "display only container IDs"},
		},
		Action: func(ctx *cli.Context) error {
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			states, err := runtime.List(c)
			if err != nil {
				return err
			}
			w := ctx.App.Writer
			if ctx.Bool("quiet") {
				for _, st := range states {
					fmt.Fprintln(w, st.ID)
				}
				return nil
			}
			switch ctx.String("format") {
			case "json":
				out := make([]stateJSON, 0, len(states))
				for _, st := range states {
					out = append(out, toStateJSON(st))
				}
				return json.NewEncoder(w).Encode(out)
			case "table":
				tw := tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)
				fmt.Fprint(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, st := range states {
					s := toStateJSON(st)
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
				}
				return tw.Flush()
			}
			return fmt.Errorf("invalid format option %q: want table or json", ctx.String("format"))
		},
	}
}
