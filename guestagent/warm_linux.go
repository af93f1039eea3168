package guestagent

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

// warmCodecs builds, in a template before its save, what a clone's first
// requests would otherwise build under its own clock, where TCG runs that
// code for the first time: protobuf's coders of every message of the
// agent's API (made on a message type's first use) and encoding/json's
// analysis of the spec's process types, which CreateProcess decodes
// (decoding alone took 22-52 ms of a clone's start under TCG, measured).
func warmCodecs() (messages int) {
	warmProcessJSON()
	var warm func(protoreflect.MessageDescriptors)
	warm = func(mds protoreflect.MessageDescriptors) {
		for i := 0; i < mds.Len(); i++ {
			md := mds.Get(i)
			warm(md.Messages())
			mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
			if err != nil {
				continue // a map entry has no Go type
			}
			m := mt.New().Interface()
			if b, err := proto.Marshal(m); err == nil && proto.Unmarshal(b, m) == nil {
				messages++
			}
		}
	}
	warm(agentapi.File_agent_proto.Messages())
	return messages
}

// warmProcessJSON decodes a process with every part a real one may have,
// so that encoding/json's analysis of those types (a cache each process
// builds on first use) is in memory before a template is saved.
func warmProcessJSON() {
	adj, umask := 0, uint32(0o22)
	caps := []string{"CAP_KILL"}
	b, err := json.Marshal(specs.Process{
		Terminal: true, ConsoleSize: &specs.Box{Height: 1, Width: 1},
		User: specs.User{UID: 1, GID: 1, Umask: &umask, AdditionalGids: []uint32{1}},
		Args: []string{"true"}, Env: []string{"PATH=/bin"}, Cwd: "/",
		Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Inheritable: caps, Permitted: caps, Ambient: caps},
		Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1, Soft: 1}},
		OOMScoreAdj:  &adj, NoNewPrivileges: true,
	})
	if err != nil {
		return
	}
	var p specs.Process
	_ = json.Unmarshal(b, &p)
}
