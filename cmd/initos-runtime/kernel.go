package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/initos-runtime/initos-runtime/kernels"
	"github.com/initos-runtime/initos-runtime/runtime"
)

func kernelCommand() *cli.Command {
	store := func(ctx *cli.Context) (*kernels.Store, error) {
		c, err := loadConfig(ctx)
		if err != nil {
			return nil, err
		}
		s := kernels.Open(c.KernelRoot)
		s.CacheDir = c.CacheDir()
		return s, nil
	}
	// onRelease is the action of a verb on one release.
	onRelease := func(verb func(*kernels.Store, string) error) cli.ActionFunc {
		return func(ctx *cli.Context) error {
			if ctx.NArg() != 1 {
				return fmt.Errorf("kernel %s: expected exactly one kernel release (initos-runtime kernel list), got %d arguments", ctx.Command.Name, ctx.NArg())
			}
			s, err := store(ctx)
			if err != nil {
				return err
			}
			return verb(s, ctx.Args().First())
		}
	}
	return &cli.Command{
		Name:  "kernel",
		Usage: "the guest kernels containers boot (annotation " + runtime.KernelAnnotation + "=RELEASE picks one; else the default)",
		Subcommands: []*cli.Command{{
			Name:      "add",
			Usage:     "add the kernel of a Debian linux-image package, or of a directory laid out as one unpacked",
			ArgsUsage: "FILE.deb|DIR...",
			Action: func(ctx *cli.Context) error {
				if ctx.NArg() == 0 {
					return fmt.Errorf("kernel add: expected a linux-image .deb or a directory laid out as one unpacked")
				}
				s, err := store(ctx)
				if err != nil {
					return err
				}
				for _, src := range ctx.Args().Slice() {
					added, err := s.Add(ctx.Context, src)
					if err != nil {
						return err
					}
					for _, k := range added {
						fmt.Fprintf(ctx.App.Writer, "added %s\n", k.Release)
					}
				}
				return nil
			},
		}, {
			Name:  "list",
			Usage: "list the kernels: the default one, and which running VMs boot",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "releases only"}},
			Action: func(ctx *cli.Context) error {
				s, err := store(ctx)
				if err != nil {
					return err
				}
				es, err := s.List()
				if err != nil {
					return err
				}
				if ctx.Bool("quiet") {
					for _, e := range es {
						fmt.Fprintln(ctx.App.Writer, e.Release)
					}
					return nil
				}
				w := tabwriter.NewWriter(ctx.App.Writer, 0, 8, 2, ' ', 0)
				fmt.Fprintln(w, "RELEASE\tDEFAULT\tIN USE\tKERNEL")
				for _, e := range es {
					def, used := "", "no"
					if e.Default {
						def = "*"
					}
					if e.InUse {
						used = "yes"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Release, def, used, e.Vmlinuz)
				}
				return w.Flush()
			},
		}, {
			Name:      "default",
			Usage:     "make a kernel the one new containers boot without the annotation",
			ArgsUsage: "RELEASE",
			Action:    onRelease((*kernels.Store).SetDefault),
		}, {
			Name:      "rm",
			Usage:     "remove a kernel no running VM boots (not the default while others exist)",
			ArgsUsage: "RELEASE",
			Action:    onRelease((*kernels.Store).Remove),
		}},
	}
}
