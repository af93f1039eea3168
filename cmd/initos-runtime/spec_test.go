package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
)

// runTestApp runs the CLI with the real global flags and the given
// commands, returning stdout and the command's error.
func runTestApp(t *testing.T, cmds []*cli.Command, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name: "initos-runtime", Flags: globalFlags(), Commands: cmds,
		Writer: &out, ErrWriter: &errOut,
		ExitErrHandler: func(*cli.Context, error) {}, // do not exit the test binary
	}
	err := app.Run(append([]string{"initos-runtime"}, args...))
	return out.String(), err
}

func TestSpecCommand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     func(dir string) []string
		existing bool
		wantErr  string
	}{
		{name: "working directory", args: func(string) []string { return []string{"spec"} }},
		{name: "--bundle", args: func(dir string) []string { return []string{"spec", "--bundle", dir} }},
		{name: "-b --rootless", args: func(dir string) []string { return []string{"spec", "-b", dir, "--rootless"} },
			wantErr: "spec --rootless: initos-runtime has no rootless mode: it runs as root on the host and refuses user namespaces; use spec without --rootless"},
		{name: "global --rootless is not spec's", args: func(dir string) []string { return []string{"--rootless", "true", "spec", "-b", dir} }},
		{name: "exists", args: func(dir string) []string { return []string{"spec", "-b", dir} }, existing: true,
			wantErr: "File config.json exists. Remove it first"},
		{name: "argument", args: func(dir string) []string { return []string{"spec", "-b", dir, "extra"} },
			wantErr: "spec: expected no arguments, got 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			cfg := filepath.Join(dir, "config.json")
			if tc.existing {
				if err := os.WriteFile(cfg, []byte("{}"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := runTestApp(t, []*cli.Command{specCommand()}, tc.args(dir)...)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if b, _ := os.ReadFile(cfg); tc.existing && string(b) != "{}" {
					t.Errorf("config.json was overwritten: %s", b)
				}
				if _, serr := os.Stat(cfg); !tc.existing && serr == nil {
					t.Error("config.json written despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var s specs.Spec
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			hasUserNS := false
			for _, n := range s.Linux.Namespaces {
				hasUserNS = hasUserNS || n.Type == specs.UserNamespace
			}
			if hasUserNS || len(s.Linux.UIDMappings) > 0 {
				t.Errorf("user namespace %v, uid mappings %v: the runtime refuses them", hasUserNS, s.Linux.UIDMappings)
			}
			if strings.HasSuffix(string(b), "\n") || !strings.Contains(string(b), "\n\t\"process\"") {
				t.Errorf("not runc's layout (tabs, no final newline): %.40q", b)
			}
		})
	}
}
