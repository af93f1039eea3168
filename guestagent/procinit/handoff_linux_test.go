package procinit

import (
	"strings"
	"testing"
)

func TestHandoffFdsErrors(t *testing.T) {
	for _, v := range []string{"1,2,3", "64,65,66,67,68,x", "3,65,66,67,68,69"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(HandoffFdsEnv, v)
			if _, _, _, _, err := HandoffFds(); err == nil || !strings.Contains(err.Error(), HandoffFdsEnv) {
				t.Errorf("%s=%s: %v, want an error naming it", HandoffFdsEnv, v, err)
			}
		})
	}
	t.Setenv(HandoffFdsEnv, "")
	if _, _, _, ok, err := HandoffFds(); ok || err != nil {
		t.Errorf("a forked helper: ok %t, %v", ok, err)
	}
}

// TestDrainOutputs: what waits in a pipe is read before the pipe is
// closed, and a reader that stops reading does not hold the exit forever.
