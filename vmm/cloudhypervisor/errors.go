package cloudhypervisor

import "errors"

// ErrBadSnapshot: a snapshot cannot be restored as a clone: its files are
// missing or unreadable, or its configuration holds a device of the
// container's (a disk, a share, a NIC) that would be its template's.
var ErrBadSnapshot = errors.New("unusable cloud-hypervisor snapshot")
