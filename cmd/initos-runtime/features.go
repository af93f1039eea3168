package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// versionAnnotation carries this binary's version in features, where runc
// puts "org.opencontainers.runc.version".
const versionAnnotation = "io.github.initos-runtime.version"

// featuresCommand is runc's features: the runtime-spec Features structure
// (features.md) as indented JSON.
func featuresCommand() *cli.Command {
	return &cli.Command{
		Name:  "features",
		Usage: "show the enabled features",
		Description: `Show the runtime-spec features of this build (what it recognizes in
config.json), not whether this host can run VMs: see "initos-runtime check".`,
		Action: func(ctx *cli.Context) error {
			if ctx.NArg() != 0 {
				return fmt.Errorf("features: expected no arguments, got %d", ctx.NArg())
			}
			f := runtime.Features()
			f.Annotations[versionAnnotation] = version
			b, err := json.MarshalIndent(f, "", "    ")
			if err != nil {
				return fmt.Errorf("encoding the features: %w", err)
			}
			_, err = fmt.Fprintf(ctx.App.Writer, "%s\n", b)
			return err
		},
	}
}
