package guestagent

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the process helper, as the agent
// binary does: the launcher re-executes /proc/self/exe as "initos-exec".
func TestMain(m *testing.M) {
	if isHelper() {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}
