package guestagent

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// logger writes "initos-agent: ..." lines to the console. Debugf lines appear
// only with initos.debug=1.
type logger struct {
	mu    sync.Mutex
	w     io.Writer
	debug bool
}

func newLogger(w io.Writer, debug bool) *logger { return &logger{w: w, debug: debug} }

func (l *logger) setDebug(debug bool) {
	l.mu.Lock()
	l.debug = debug
	l.mu.Unlock()
}

// Printf logs one line whatever the debug setting.
func (l *logger) Printf(format string, args ...any) { l.write(fmt.Sprintf(format, args...)) }

// Debugf logs one line with initos.debug=1 only.
func (l *logger) Debugf(format string, args ...any) {
	l.mu.Lock()
	debug := l.debug
	l.mu.Unlock()
	if debug {
		l.write(fmt.Sprintf(format, args...))
	}
}

func (l *logger) write(msg string) {
	// One write per line keeps lines whole; the console's tty adds the CR.
	line := "initos-agent: " + strings.TrimRight(msg, "\n") + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}
