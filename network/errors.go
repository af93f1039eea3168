package network

import "errors"

var (
	// ErrNoInterface: the namespace has no non-loopback interface with an IPv4 address.
	ErrNoInterface = errors.New("no interface with an IPv4 address")
	// ErrAmbiguousInterface: the namespace has more than one candidate interface.
	ErrAmbiguousInterface = errors.New("more than one interface with an IPv4 address")
	// ErrExists: a link that should be created already exists.
	ErrExists = errors.New("already exists")
	// ErrNotTap: a link that should be a tap device is something else.
	ErrNotTap = errors.New("not a tap device")
	// ErrNotBridge: a link that should be a bridge is something else.
	ErrNotBridge = errors.New("not a bridge")
	// ErrExhausted: the IPAM subnet has no free address left.
	ErrExhausted = errors.New("no free address")
	// ErrInvalidArgument: bad input (subnet, owner, name, address).
	ErrInvalidArgument = errors.New("invalid argument")
)
