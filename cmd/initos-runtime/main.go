// Command initos-runtime is an OCI runtime with runc's command line that runs
// each container in its own microVM. main only parses flags and hands off to
// the verbs, one file each.
package main

import (
	"os"

	"github.com/urfave/cli/v2"
)

// version is set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	app := &cli.App{
		Name:                 "initos-runtime",
		Usage:                "run OCI containers in microVMs",
		Version:              version,
		EnableBashCompletion: false,
		Flags:                globalFlags(),
		Commands: []*cli.Command{
			createCommand(), startCommand(), runCommand(), stateCommand(), killCommand(), deleteCommand(),
			execCommand(), psCommand(), listCommand(), pauseCommand(), resumeCommand(), checkCommand(),
			updateCommand(), eventsCommand(), specCommand(), featuresCommand(), networkCommand(), kernelCommand(),
			monitorCommand(), execWaiterCommand(),
		},
		ExitErrHandler: exitErrHandler,
	}
	if err := app.Run(os.Args); err != nil {
		exitErrHandler(nil, err)
		os.Exit(1)
	}
}
