package guestagent

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by the service wrap one of them (test with
// errors.Is); the message names the process, state or resource.
var (
	// ErrNotFound: unknown process id, missing executable or missing file.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a process id is used twice.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition: the call does not fit the current state, e.g.
	// Setup twice, StartProcess twice, or signalling an exited process.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrInvalidArgument: a malformed request, command line or option.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotSupported: a request the agent does not implement (yet).
	ErrNotSupported = errors.New("not supported")
)

// errModuleLive: a module was not loaded because the kernel has it live
// already (loadUnlessLive); the loaders skip it without an error.
var errModuleLive = errors.New("module already live")

// kindError is an error whose message is exactly its text (no sentinel text
// appended) but that still matches its sentinel with errors.Is.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf formats like fmt.Errorf (%w included) and tags the result with kind.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}
