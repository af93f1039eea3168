package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// globalFlags are runc's global flags plus the VM settings.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "root", Value: runtime.DefaultRoot, Usage: "root directory for storage of container state", EnvVars: []string{"INITOS_ROOT"}},
		&cli.StringFlag{Name: "log", Usage: "set the log file to write runtime logs to (default is stderr)"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "set the log format ('text' or 'json')"},
		&cli.BoolFlag{Name: "debug", Usage: "enable debug logging (also makes the guest agent log each step to the console log)"},
		&cli.BoolFlag{Name: "systemd-cgroup", Usage: "accepted for runc compatibility; cgroups live in the guest"},
		&cli.StringFlag{Name: "rootless", Value: "auto", Usage: "accepted for runc compatibility"},
		&cli.StringFlag{Name: "criu", Usage: "accepted for runc compatibility and ignored"},
		&cli.StringFlag{Name: "config", Value: runtime.DefaultConfigFile, Usage: "initos-runtime config file (JSON; optional at its default path)", EnvVars: []string{"INITOS_CONFIG"}},
		&cli.StringFlag{Name: "data-dir", Usage: "directory with the guest kernel, caches and disk images (default " + runtime.DefaultDataDir + ")", EnvVars: []string{"INITOS_DATA_DIR"}},
		&cli.StringFlag{Name: "vmm", Usage: "VMM driver: auto, qemu or cloud-hypervisor", EnvVars: []string{"INITOS_VMM"}},
	}
}

// loadConfig merges the config file with the global flags; flags win.
func loadConfig(ctx *cli.Context) (runtime.Config, error) {
	path := ctx.String("config")
	c, err := runtime.LoadConfigFile(path, !ctx.IsSet("config") && path == runtime.DefaultConfigFile)
	if err != nil {
		return c, err
	}
	if ctx.IsSet("root") || c.Root == "" {
		c.Root = ctx.String("root")
	}
	if v := ctx.String("data-dir"); v != "" {
		c.DataDir = v
		c.KernelRoot = ""
	}
	if v := ctx.String("vmm"); v != "" {
		c.VMM = v
	}
	if ctx.Bool("debug") {
		c.Debug = true
	}
	c = c.WithDefaults()
	return c, c.Validate()
}

// preserveFdsFlag is runc's --preserve-fds: file descriptors past stdio
// that the process inherits. None can cross into a VM.
func preserveFdsFlag() cli.Flag {
	return &cli.IntFlag{Name: "preserve-fds", Usage: "runc's extra file descriptors for the process: a VM can take none, so only 0 is accepted"}
}

// checkPreserveFds refuses --preserve-fds above 0: the process would start
// without descriptors it was promised (socket activation's, say).
func checkPreserveFds(ctx *cli.Context) error {
	if n := ctx.Int("preserve-fds"); n > 0 {
		return fmt.Errorf("--preserve-fds %d: %w: the container runs in a VM, which cannot take file descriptors of the host (only stdio crosses)", n, runtime.ErrUnsupported)
	}
	return nil
}
