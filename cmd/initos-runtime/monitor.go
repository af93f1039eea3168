package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// monitorCommand is internal: create re-executes the binary with it, and
// the process it starts is the container's monitor (the pid conmon waits
// for), which exits with the container's exit status.
func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:      "monitor",
		Hidden:    true,
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Required: true},
			&cli.StringFlag{Name: "console-socket"},
		},
		Action: func(ctx *cli.Context) error {
			id, c, ready, err := internalStart(ctx, "create")
			if err != nil {
				return err
			}
			logf, err := os.OpenFile(filepath.Join(c.Root, id, "monitor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return fmt.Errorf("opening monitor log: %w", err)
			}
			defer logf.Close()
			// Stderr is the container's (conmon's pipe): what a library
			// logs through the standard logger goes to the monitor's log.
			log.SetOutput(logf)
			status := runtime.MonitorMain(context.Background(), c, runtime.MonitorOptions{
				BundleDir:     ctx.String("bundle"),
				ID:            id,
				ConsoleSocket: ctx.String("console-socket"),
				Ready:         ready,
				Stdio:         runtime.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr},
				Log:           log.New(logf, "", log.LstdFlags|log.Lmicroseconds),
			})
			return cli.Exit("", status)
		},
	}
}

// internalStart is the common start of the internal verbs: the id, the
// config the verb that re-executed us resolved, and the ready pipe on
// ReadyFD (checked to be a pipe: only that verb can have given it).
func internalStart(ctx *cli.Context, startedBy string) (string, runtime.Config, *os.File, error) {
	id, err := oneID(ctx)
	if err != nil {
		return "", runtime.Config{}, nil, err
	}
	c, err := internalConfig()
	if err != nil {
		return "", c, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(runtime.ReadyFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return "", c, nil, fmt.Errorf("%s: no ready pipe on fd %d (started by %s only)", ctx.Command.Name, runtime.ReadyFD, startedBy)
	}
	return id, c, os.NewFile(runtime.ReadyFD, "ready"), nil
}

// internalConfig is the config the verb that re-executed us resolved.
func internalConfig() (runtime.Config, error) {
	var c runtime.Config
	s := os.Getenv(configEnv)
	if s == "" {
		return c, fmt.Errorf("internal verb run without %s", configEnv)
	}
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return c, fmt.Errorf("parsing %s: %w", configEnv, err)
	}
	return c, nil
}
