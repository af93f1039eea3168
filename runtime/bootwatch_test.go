package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStallScanner(t *testing.T) {
	stall := "[    3.269925] APIC frequency too slow, disabling apic timer\n"
	for _, tc := range []struct {
		name   string
		pieces []string
		want   bool
	}{
		{"clean boot", []string{"[ 0.1] tsc: Detected 2596.120 MHz TSC\n", "initos-agent: ready\n"}, false},
		{"in one piece", []string{"[ 0.1] x\n" + stall}, true},
		{"split across pieces", []string{"[ 0.1] x\n" + stall[:30], stall[30:50], stall[50:]}, true},
		{"split byte by byte", strings.Split(stall, ""), true},
		{"other apic lines", []string{"[ 0.2] APIC: Switch to symmetric I/O mode setup\n"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s stallScanner
			got := false
			for _, p := range tc.pieces {
				if _, ok := s.scan([]byte(p)); ok {
					got = true
				}
			}
			if got != tc.want {
				t.Errorf("found a stall: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWatchConsole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		// The log appears after the watch starts and grows in pieces.
		time.Sleep(20 * time.Millisecond)
		f, err := os.Create(path)
		if err != nil {
			return
		}
		defer f.Close()
		f.WriteString("[    0.1] booting\n[    3.2] APIC frequency too ")
		time.Sleep(30 * time.Millisecond)
		f.WriteString("slow, disabling apic timer\n")
	}()
	line, ok := watchConsole(ctx, path, 5*time.Millisecond)
	if !ok || !strings.Contains(line, "APIC frequency too slow") {
		t.Fatalf("watchConsole = %q, %v; want the APIC stall", line, ok)
	}

	// A clean console: the watch ends with its context.
	clean := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(clean, []byte("initos-agent: ready\n"), 0o600)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if line, ok := watchConsole(ctx2, clean, 5*time.Millisecond); ok {
		t.Fatalf("watchConsole on a clean console found %q", line)
	}
}
