package guestagent

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/initos-runtime/initos-runtime/agentapi"
	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// warmCodecs builds, in a template before its save, what a clone's first
// requests would otherwise build under its own clock, where TCG runs that
// code for the first time: protobuf's coders of every message of the
// agent's API (made on a message type's first use) and encoding/json's
// analysis of the process types (CreateProcess decodes a process, the
// launcher encodes the helper's configuration).
func warmCodecs() (messages int) {
	procinit.WarmJSON()
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
