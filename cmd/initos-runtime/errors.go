package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

// exitErrHandler prints an error the way runc does: to stderr, and to the
// --log file (as a JSON line with --log-format json, which conmon reads).
func exitErrHandler(ctx *cli.Context, err error) {
	if err == nil {
		return
	}
	if ec, ok := err.(cli.ExitCoder); ok && err.Error() == "" {
		os.Exit(ec.ExitCode())
	}
	fmt.Fprintf(os.Stderr, "initos-runtime: %v\n", err)
	if ctx != nil {
		if path := ctx.String("log"); path != "" {
			writeLogLine(path, ctx.String("log-format"), err)
		}
	}
	if ec, ok := err.(cli.ExitCoder); ok {
		os.Exit(ec.ExitCode())
	}
	os.Exit(1)
}

func writeLogLine(path, format string, err error) {
	f, ferr := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if ferr != nil {
		return
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if format == "json" {
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": err.Error(), "time": now})
		fmt.Fprintf(f, "%s\n", b)
		return
	}
	fmt.Fprintf(f, "time=%q level=error msg=%q\n", now, err.Error())
}
