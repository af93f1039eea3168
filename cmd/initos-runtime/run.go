package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/runtime"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "create and run a container in a microVM, in the foreground",
		ArgsUsage: "<container-id>",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Value: ".", Usage: "path to the root of the bundle directory"},
			&cli.StringFlag{Name: "pid-file", Usage: "file to write the pid of the process that owns the container's VM to"},
			&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for runc compatibility"},
			&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility"},
			&cli.BoolFlag{Name: "no-subreaper", Usage: "accepted for runc compatibility"},
			&cli.BoolFlag{Name: "timings", Usage: "print the time of each phase to stderr when the container ends"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process: create and start it, leaving its monitor"},
			&cli.StringFlag{Name: "console-socket", Usage: "with --detach: path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
			preserveFdsFlag(),
		},
		Action: runAction,
	}
}

func runAction(ctx *cli.Context) error {
	if ctx.NArg() != 1 {
		return fmt.Errorf("run: expected exactly one container id, got %d arguments", ctx.NArg())
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
	if ctx.Bool("detach") {
		return runDetached(ctx, c, bundleDir)
	}
	if p := ctx.String("pid-file"); p != "" {
		if err := writePidFile(p, os.Getpid()); err != nil {
			return err
		}
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	res, err := runtime.Run(context.Background(), c, runtime.RunOptions{
		BundleDir: bundleDir,
		ID:        ctx.Args().First(),
		Stdio:     runtime.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr},
		Signals:   sigs,
		Terminal:  hostTerminalFunc,
		Warn:      func(msg string) { fmt.Fprintf(os.Stderr, "initos-runtime: warning: %s\n", msg) },
	})
	if ctx.Bool("timings") {
		t := res.Timings
		fmt.Fprintf(os.Stderr, "vmm=%s accel=%s disk=%s initrd=%s queued=%s boot=%s boots=%d network=%s setup=%s run=%s teardown=%s quiesce=%s\n",
			res.Driver, res.Accel, t.Disk, t.Initrd, t.Queued, t.Boot, t.Boots, t.Network, t.Setup, t.Run, t.Teardown, t.Quiesce)
		switch {
		case t.Restored && t.TemplateBuilt:
			fmt.Fprintf(os.Stderr, "restored from a template booted and saved by this start; its guest: %s\n", t.Guest)
		case t.Restored:
			fmt.Fprintf(os.Stderr, "restored from a template; its guest: %s\n", t.Guest)
		default:
			fmt.Fprintf(os.Stderr, "guest: %s\n", t.Guest)
		}
	}
	if err != nil {
		return err
	}
	return cli.Exit("", res.ExitStatus)
}

// runDetached is run -d: create (leaving the monitor) then start.
func runDetached(ctx *cli.Context, c runtime.Config, bundleDir string) error {
	id := ctx.Args().First()
	if err := createContainer(ctx, c, bundleDir, id); err != nil {
		return err
	}
	return runtime.Start(context.Background(), c, id)
}

// forwardedSignals are relayed to the container's process by run, as runc
// does; SIGCHLD, SIGPIPE, SIGURG and SIGWINCH stay the runtime's own.
var forwardedSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT,
	syscall.SIGALRM, syscall.SIGTSTP,
}
