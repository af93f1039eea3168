package shim

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestBinaryLogger(t *testing.T) {
	dir := t.TempDir()
	logger := filepath.Join(dir, "logger")
	out := filepath.Join(dir, "out")
	// The logging protocol: fds 3 and 4 are stdout and stderr, fd 5 is
	// closed once ready; the URI's query is the arguments.
	script := "#!/bin/sh\nexec 5>&-\n{ cat <&3; cat <&4; echo \"$CONTAINER_ID $CONTAINER_NAMESPACE $1\"; } > \"$2\"\n"
	if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	pio, err := openStdio(context.Background(), "c1", "ns1", stdioPaths{stdout: "binary://" + logger + "?file=" + out})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pio.stdout, "out\n")
	io.WriteString(pio.stderr, "err\n")
	if err := pio.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "out\nerr\nc1 ns1 file\n" {
		t.Errorf("logger wrote %q, %v", b, err)
	}
}

func TestBinaryLoggerMissing(t *testing.T) {
	_, err := openStdio(context.Background(), "c1", "ns1", stdioPaths{stdout: "binary:///nonexistent/logger"})
	if err == nil {
		t.Fatal("a missing logging binary is no error")
	}
}

func TestFifoStdio(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, p := range []string{in, out} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pio, err := openStdio(context.Background(), "c1", "ns1", stdioPaths{stdin: in, stdout: out, terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	if pio.stderr != nil {
		t.Error("a terminal has no stderr")
	}
	r, err := os.OpenFile(out, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "typed")
	w.Close()
	b, err := io.ReadAll(pio.stdin)
	if err != nil || string(b) != "typed" {
		t.Errorf("stdin read %q, %v", b, err)
	}
	io.WriteString(pio.stdout, "shown")
	pio.Close()
	got, _ := io.ReadAll(r)
	if string(got) != "shown" {
		t.Errorf("stdout fifo got %q", got)
	}
}
