package procinit

import "errors"

// Sentinel errors of the helper's steps that callers tell apart (test with
// errors.Is); the message names the path or the program.
var (
	// ErrExecutableNotFound: the process's program is not in its PATH.
	ErrExecutableNotFound = errors.New("executable file not found in $PATH")
	// ErrTooManySymlinks: a path inside a root followed more symlinks than
	// a path lookup may.
	ErrTooManySymlinks = errors.New("too many symlinks")
)
