package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/bundle"
	"github.com/initos-runtime/initos-runtime/runtime"
)

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run another process in a running container's VM",
		ArgsUsage: "<container-id> [command [args...]]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
			&cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set environment variables"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pseudo-TTY"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "UID (format: <uid>[:<gid>])"},
			&cli.Int64SliceFlag{Name: "additional-gids", Aliases: []string{"g"}, Usage: "additional gids"},
			&cli.StringFlag{Name: "process", Aliases: []string{"p"}, Usage: "path to the process.json"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
			&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
			&cli.StringFlag{Name: "process-label", Usage: "accepted for runc compatibility"},
			&cli.StringFlag{Name: "apparmor", Usage: "accepted for runc compatibility"},
			&cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
			&cli.StringSliceFlag{Name: "cap", Aliases: []string{"c"}, Usage: "add a capability to the bounding, effective and permitted sets of the process"},
			preserveFdsFlag(),
			&cli.BoolFlag{Name: "ignore-paused", Usage: "accepted for runc compatibility"},
			&cli.StringFlag{Name: "cgroup", Usage: "accepted for runc compatibility"},
		},
		Action: execAction,
	}
}

func execAction(ctx *cli.Context) error {
	if ctx.NArg() < 1 {
		return fmt.Errorf("exec: expected a container id")
	}
	id := ctx.Args().First()
	if err := checkPreserveFds(ctx); err != nil {
		return err
	}
	c, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	proc, err := execProcess(ctx, c, id)
	if err != nil {
		return err
	}
	if ctx.Bool("detach") {
		return execDetached(ctx, c, id, proc)
	}
	status, err := runtime.Exec(context.Background(), c, runtime.ExecOptions{
		ID: id, Process: proc, ConsoleSocket: ctx.String("console-socket"),
		Stdio:    runtime.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr},
		Terminal: hostTerminalFunc,
	})
	if err != nil {
		return err
	}
	return cli.Exit("", status)
}

// execDetached leaves a waiter process (the pid in --pid-file, which
// conmon waits for) that relays the process's stdio and exits with its
// status.
func execDetached(ctx *cli.Context, c runtime.Config, id string, proc *specs.Process) error {
	b, err := json.Marshal(proc)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(c.Root, id), "exec-process-")
	if err != nil {
		return fmt.Errorf("exec in container %q: %w", id, err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("exec in container %q: %w", id, werr)
	}
	waiter, err := selfCommand(c, "exec-waiter", "--process", f.Name(), "--console-socket", ctx.String("console-socket"), id)
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	pid, err := runtime.ExecDetached(context.Background(), c, id, waiter)
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if p := ctx.String("pid-file"); p != "" {
		return writePidFile(p, pid)
	}
	return nil
}

// execProcess is the process to exec: --process, or the container's own
// process with the command line's args, env, cwd, user and tty.
func execProcess(ctx *cli.Context, c runtime.Config, id string) (*specs.Process, error) {
	if path := ctx.String("process"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading process %q: %w", path, err)
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("parsing process %q: %w", path, err)
		}
		return &p, nil
	}
	st, err := runtime.StateOf(c, id)
	if err != nil {
		return nil, err
	}
	b, err := bundle.Load(st.Bundle)
	if err != nil {
		return nil, err
	}
	p := *b.Spec.Process
	p.Args = ctx.Args().Tail()
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("exec: no command given (and no --process)")
	}
	p.Env = append(append([]string(nil), p.Env...), ctx.StringSlice("env")...)
	if cwd := ctx.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	p.Terminal = ctx.Bool("tty")
	if ctx.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	if u := ctx.String("user"); u != "" {
		uid, gid, ok := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing --user %q: uid must be a number", u)
		}
		p.User.UID = uint32(n)
		if ok {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing --user %q: gid must be a number", u)
			}
			p.User.GID = uint32(g)
		}
	}
	for _, g := range ctx.Int64Slice("additional-gids") {
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	addCaps(&p, ctx.StringSlice("cap"))
	return &p, nil
}

// addCaps adds caps to p's bounding, effective and permitted sets, as
// runc's exec --cap does; to its ambient set only when p has inheritable
// capabilities (ambient ones need inheritable ones, which --cap does not
// add). p's sets are copied first: they are the container's spec's.
func addCaps(p *specs.Process, caps []string) {
	if len(caps) == 0 {
		return
	}
	var c specs.LinuxCapabilities
	if p.Capabilities != nil {
		c = *p.Capabilities
	}
	add := func(set []string) []string { return append(append([]string(nil), set...), caps...) }
	c.Bounding, c.Effective, c.Permitted = add(c.Bounding), add(c.Effective), add(c.Permitted)
	if len(c.Inheritable) > 0 {
		c.Ambient = add(c.Ambient)
	}
	p.Capabilities = &c
}
