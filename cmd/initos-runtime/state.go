package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// stateJSON is runc's state output: the OCI state plus created and owner.
type stateJSON struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func toStateJSON(st *runtime.State) stateJSON {
	o := st.OCIState()
	return stateJSON{OCIVersion: o.Version, ID: o.ID, Pid: o.Pid, Status: string(o.Status), Bundle: o.Bundle,
		Rootfs: st.Rootfs, Created: st.Created, Owner: st.Owner, Annotations: o.Annotations}
}

func stateCommand() *cli.Command {
	return &cli.Command{
		Name:      "state",
		Usage:     "output the state of a container",
		ArgsUsage: "<container-id>",
		Action: func(ctx *cli.Context) error {
			id, err := oneID(ctx)
			if err != nil {
				return err
			}
			c, err := loadConfig(ctx)
			if err != nil {
				return err
			}
			st, err := runtime.StateOf(c, id)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(toStateJSON(st), "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(ctx.App.Writer, string(b))
			return nil
		},
	}
}
