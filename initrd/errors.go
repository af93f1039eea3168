package initrd

import "errors"

var (
	// ErrNoKernel is returned by FindKernel when the root holds no
	// boot/vmlinuz-<release> with a matching lib/modules/<release>.
	ErrNoKernel = errors.New("no kernel found")
	// ErrNoPayload is returned by ExtractVmlinux when no compressed stream in
	// the image decompresses to an ELF file.
	ErrNoPayload = errors.New("no compressed ELF vmlinux found")
	// ErrModuleNotFound is returned when a wanted module, or a hard
	// dependency of one, is neither a module file nor built into the kernel.
	ErrModuleNotFound = errors.New("module not found")
	// ErrDependencyCycle is returned when module dependencies form a cycle.
	ErrDependencyCycle = errors.New("module dependency cycle")
	// ErrUnknownGroup is returned for a module group that docs/contracts.md
	// does not define.
	ErrUnknownGroup = errors.New("unknown module group")
	// ErrBadModuleName is returned for a module request whose name could
	// not be a module's or an alias: empty, too long, or holding '/',
	// "..", a space or a control character.
	ErrBadModuleName = errors.New("bad module name")
	// ErrBadModIndex is returned by ReadModIndex for an index it cannot
	// trust: a wrong version, a malformed line, or a module file outside
	// the modules directory.
	ErrBadModIndex = errors.New("bad module index")
)
