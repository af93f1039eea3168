package runtime

import (
	"bytes"
	"context"
	"io"
	"os"
	"time"
)

// bootStalls are console lines of a guest that will never reach its agent,
// though a new boot of the same VM will.
//
// "APIC frequency too slow": measured on our hosts (TCG on a nested PVM
// host, 12 to 20 VMs booting at once: 5 stalls in about 600 boots), every
// boot that never reached its agent had printed this line, and no boot
// that did. The kernel calibrates its local APIC timer against the TSC for
// a few jiffies; under TCG the guest's TSC is the host's while its APIC
// timer runs on qemu's virtual clock, and on a loaded host the two can
// disagree there ("Fast TSC calibration failed" is common then too). The
// kernel then disables the APIC timer, and the fallback tick (the PIT,
// through the IOAPIC) never arrives on qemu's microvm: the guest halts at
// its first wait with no timer armed (qemu's `info lapic` of a stalled
// guest: LVTT masked, still in its calibration setup; the IOAPIC's timer
// pins masked), so no hung-task or soft-lockup report can come either.
// The kernel cannot skip the calibration without a TSC-deadline timer
// (TCG has none) or a hypervisor's timing leaf (KVM or VMware only).
var bootStalls = [][]byte{[]byte("APIC frequency too slow, disabling apic timer")}

// consolePoll is how often a booting guest's console is scanned for
// bootStalls.
const consolePoll = 200 * time.Millisecond

// stallScanner finds bootStalls in a console read piece by piece: a line
// split between two reads is still found.
type stallScanner struct {
	carry []byte // the end of the last piece, shorter than the longest signature
}

// scan looks for a bootStalls line in the next piece of the console.
func (s *stallScanner) scan(piece []byte) (string, bool) {
	buf := append(s.carry, piece...)
	longest := 0
	for _, sig := range bootStalls {
		if bytes.Contains(buf, sig) {
			return string(sig), true
		}
		longest = max(longest, len(sig))
	}
	keep := min(len(buf), longest-1)
	s.carry = append([]byte(nil), buf[len(buf)-keep:]...)
	return "", false
}

// consoleScanMax bounds what watchConsole reads of the console per poll: a
// guest that floods its console cannot make the host read it all at once
// (what is left is read at the next polls).
const consoleScanMax = 64 << 10

// watchConsole scans the console log at path every poll until ctx ends,
// and returns the first bootStalls line it finds. A log that does not
// exist yet is waited for.
func watchConsole(ctx context.Context, path string, poll time.Duration) (string, bool) {
	var (
		s   stallScanner
		off int64
	)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if f, err := os.Open(path); err == nil {
			piece, _ := io.ReadAll(io.NewSectionReader(f, off, consoleScanMax))
			f.Close()
			off += int64(len(piece))
			if line, ok := s.scan(piece); ok {
				return line, true
			}
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-t.C:
		}
	}
}
