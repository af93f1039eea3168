package kernels

import "errors"

// Sentinel errors of the kernel store; test them with errors.Is.
var (
	// ErrNotAdded: no kernel of that release is in the store.
	ErrNotAdded = errors.New("kernel not added")
	// ErrAlreadyAdded: Add of a release the store has.
	ErrAlreadyAdded = errors.New("kernel already added")
	// ErrNotAPackage: Add of something that is neither a linux-image .deb
	// nor a directory laid out as one extracted.
	ErrNotAPackage = errors.New("not a linux-image package")
	// ErrInUse: Remove of a kernel a running VM booted from.
	ErrInUse = errors.New("kernel in use")
	// ErrIsDefault: Remove of the default kernel.
	ErrIsDefault = errors.New("kernel is the default")
	// ErrLastKernel: Remove of the only kernel.
	ErrLastKernel = errors.New("kernel is the only one")
	// ErrBeingRemoved: Hold of a kernel Remove is deleting.
	ErrBeingRemoved = errors.New("kernel is being removed")
	// ErrBadRelease: a release that is not a plain name.
	ErrBadRelease = errors.New("invalid kernel release")
)
