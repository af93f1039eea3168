package guestagent

import (
	"testing"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

func TestWarmCodecs(t *testing.T) {
	// Every message of the API, nested ones included, is warmed: the
	// top-level ones alone are fewer.
	top := agentapi.File_agent_proto.Messages().Len()
	if n := warmCodecs(); n < top {
		t.Errorf("warmCodecs warmed %d messages, want at least the API's %d top-level ones", n, top)
	}
}
