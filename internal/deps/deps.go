// Package deps pins the design's modules in go.mod while the packages that
// use them are written. Removed once every import below has a real user.
package deps

import (
	_ "github.com/containerd/ttrpc"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/ulikunitz/xz"
	_ "github.com/urfave/cli/v2"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/sys/unix"
	_ "google.golang.org/protobuf/proto"
)
