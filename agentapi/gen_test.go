package agentapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent: the committed Go code of agent.proto and
// monitor.proto is what `make proto` makes of them now, with the pinned
// protoc-gen-go and protoc-gen-go-ttrpc (scripts/setup.sh installs them).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	for _, tool := range []string{"protoc", "protoc-gen-go", "protoc-gen-go-ttrpc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (scripts/setup.sh installs protoc with Debian's protobuf-compiler, and the plugins with go install): %v", tool, err)
		}
	}
	for _, tc := range []struct {
		dir, proto string
		generated  []string
	}{
		{".", "agent.proto", []string{"agent.pb.go", "agent_ttrpc.pb.go"}},
		{"../monitorapi", "monitor.proto", []string{"monitor.pb.go", "monitor_ttrpc.pb.go"}},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			out := t.TempDir()
			// gen.go's go:generate line, with the output elsewhere.
			cmd := exec.Command("protoc", "-I.", "--go_out="+out, "--go_opt=paths=source_relative",
				"--go-ttrpc_out="+out, "--go-ttrpc_opt=paths=source_relative", tc.proto)
			cmd.Dir = tc.dir
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("protoc %s: %v: %s", tc.proto, err, b)
			}
			for _, f := range tc.generated {
				want, err := os.ReadFile(filepath.Join(out, f))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(tc.dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s is not what %s generates now: run make proto (with the plugins' pinned versions, scripts/setup.sh)", filepath.Join(tc.dir, f), tc.proto)
				}
			}
		})
	}
}
