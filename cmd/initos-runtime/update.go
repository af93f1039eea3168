package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "update a container's resource limits (its cgroup in the guest; more memory or CPUs than the VM has are refused with the reason)",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "resources", Aliases: []string{"r"}, Usage: "path to a file with the linux resources to apply, or - for stdin"},
			&cli.Int64Flag{Name: "memory", Usage: "memory limit in bytes"},
			&cli.Int64Flag{Name: "cpu-quota", Usage: "CPU CFS quota in microseconds"},
			&cli.Uint64Flag{Name: "cpu-period", Usage: "CPU CFS period in microseconds"},
			&cli.Int64Flag{Name: "pids-limit", Usage: "maximum number of pids"},
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
			r := &specs.LinuxResources{}
			if path := ctx.String("resources"); path != "" {
				var b []byte
				if path == "-" {
					b, err = io.ReadAll(os.Stdin)
				} else {
					b, err = os.ReadFile(path)
				}
				if err != nil {
					return fmt.Errorf("reading resources %q: %w", path, err)
				}
				if err := json.Unmarshal(b, r); err != nil {
					return fmt.Errorf("parsing resources %q: %w", path, err)
				}
			}
			if ctx.IsSet("memory") {
				v := ctx.Int64("memory")
				r.Memory = &specs.LinuxMemory{Limit: &v}
			}
			if ctx.IsSet("cpu-quota") || ctx.IsSet("cpu-period") {
				q, p := ctx.Int64("cpu-quota"), ctx.Uint64("cpu-period")
				if p == 0 {
					p = 100000
				}
				r.CPU = &specs.LinuxCPU{Quota: &q, Period: &p}
			}
			if ctx.IsSet("pids-limit") {
				r.Pids = &specs.LinuxPids{Limit: ptr(ctx.Int64("pids-limit"))}
			}
			return runtime.Update(c, id, r)
		},
	}
}

func ptr[T any](v T) *T { return &v }
