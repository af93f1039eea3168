package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// event is runc's events line: {"type":"stats","id":...,"data":{...}}.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// statsData keeps runc's field names for what a VM can report: CPU and
// memory are the VMM process's (the whole VM as the host pays for it),
// pids the guest's processes.
type statsData struct {
	CPU struct {
		Usage struct {
			Total uint64 `json:"total"`
		} `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Usage struct {
			Usage uint64 `json:"usage"`
			Limit uint64 `json:"limit"`
		} `json:"usage"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current"`
	} `json:"pids"`
}

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "display the container's resource usage (the VM's, as the host sees it) until it stops",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "set the stats collection interval"},
			&cli.BoolFlag{Name: "stats", Usage: "display the container's stats once, then exit"},
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
			if ctx.Duration("interval") <= 0 {
				return errors.New("events: --interval must be positive")
			}
			enc := json.NewEncoder(ctx.App.Writer)
			for {
				s, err := runtime.Stats(context.Background(), c, id)
				if err != nil {
					if !ctx.Bool("stats") && errors.Is(err, runtime.ErrWrongState) {
						return nil // the container has stopped: the stream ends
					}
					return err
				}
				var d statsData
				d.CPU.Usage.Total = s.CpuNanos
				d.Memory.Usage.Usage, d.Memory.Usage.Limit = s.MemoryBytes, s.MemoryLimitBytes
				d.Pids.Current = uint64(s.Pids)
				if err := enc.Encode(event{Type: "stats", ID: id, Data: d}); err != nil {
					return err
				}
				if ctx.Bool("stats") {
					return nil
				}
				time.Sleep(ctx.Duration("interval"))
			}
		},
	}
}
