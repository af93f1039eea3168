package guestagent

import (
	"os"
	"testing"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// TestMain lets the test binary serve as the process helper, as
// cmd/initos-exec does in the initrd: the tests' launcher re-executes
// /proc/self/exe as "initos-exec".
func TestMain(m *testing.M) {
	if procinit.IsHelper() {
		os.Exit(procinit.Main())
	}
	os.Exit(m.Run())
}
