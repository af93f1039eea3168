// Package agentapi is the host-guest protocol of initos-runtime: one ttrpc
// service, Agent, defined in agent.proto and generated into Go. The runtime
// on the host is its client and the guest agent is its server; both import
// this package, so the protocol exists exactly once.
package agentapi

// Version is the protocol version both sides are built from.
const Version = "1"

// MaxReadBytes bounds ReadStdout/ReadStderr replies; ttrpc's message limit is
// 4 MiB.
const MaxReadBytes = 1 << 20
