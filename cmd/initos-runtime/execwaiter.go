package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// execWaiterCommand is internal: exec --detach re-executes the binary with
// it; the process relays the exec'd process's stdio and exits with its
// status (conmon waits for it).
func execWaiterCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec-waiter",
		Hidden:    true,
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "process", Required: true},
			&cli.StringFlag{Name: "console-socket"},
		},
		Action: func(ctx *cli.Context) error {
			id, c, ready, err := internalStart(ctx, "exec --detach")
			if err != nil {
				return err
			}
			b, err := os.ReadFile(ctx.String("process"))
			os.Remove(ctx.String("process"))
			var p specs.Process
			if err == nil {
				err = json.Unmarshal(b, &p)
			}
			if err != nil {
				fmt.Fprintf(ready, "error: reading the process to exec: %v\n", err)
				ready.Close()
				return cli.Exit("", 1)
			}
			status, err := runtime.Exec(context.Background(), c, runtime.ExecOptions{
				ID: id, Process: &p, ConsoleSocket: ctx.String("console-socket"),
				Stdio: runtime.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr},
				Ready: ready,
			})
			if err != nil {
				// Before ready the error went to exec; after, the exit
				// code says it, and stderr (the process's) names it, as
				// runc's errors do.
				fmt.Fprintf(os.Stderr, "initos-runtime: exec in container %q: %v\n", id, err)
				return cli.Exit("", 255)
			}
			return cli.Exit("", status)
		},
	}
}
