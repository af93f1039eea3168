package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a container: boot its VM and prepare its process, without starting it",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the root of the bundle directory"},
			&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
			&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
			&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for runc compatibility"},
			&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility"},
			preserveFdsFlag(),
		},
		Action: func(ctx *cli.Context) error {
			id, err := oneID(ctx)
			if err != nil {
				return err
			}
			if err := checkPreserveFds(ctx); err != nil {
				return err
			}
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			bundleDir, err := filepath.Abs(ctx.String("bundle"))
			if err != nil {
				return fmt.Errorf("resolving bundle path: %w", err)
			}
			return createContainer(ctx, c, bundleDir, id)
		},
	}
}

// createContainer starts the container's monitor (create, and run
// --detach) and writes its pid to --pid-file.
func createContainer(ctx *cli.Context, c runtime.Config, bundleDir, id string) error {
	mon, err := selfCommand(c, "monitor", "--bundle", bundleDir, "--console-socket", ctx.String("console-socket"), id)
	if err != nil {
		return err
	}
	pid, err := runtime.Create(context.Background(), c, runtime.CreateOptions{BundleDir: bundleDir, ID: id, Monitor: mon})
	if err != nil {
		return err
	}
	if p := ctx.String("pid-file"); p != "" {
		return writePidFile(p, pid)
	}
	return nil
}

// configEnv carries the resolved config to the re-executed monitor and
// exec waiter, so they act on the same root and data dir as the verb.
const configEnv = "INITOS_RESOLVED_CONFIG"

// selfCommand re-executes this binary for an internal verb with the
// caller's stdio.
func selfCommand(c runtime.Config, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding own executable: %w", err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), configEnv+"="+string(b))
	return cmd, nil
}

// oneID returns the single container id argument.
func oneID(ctx *cli.Context) (string, error) {
	if ctx.NArg() != 1 {
		return "", fmt.Errorf("%s: expected exactly one container id, got %d arguments", ctx.Command.Name, ctx.NArg())
	}
	return ctx.Args().First(), nil
}
