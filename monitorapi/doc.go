// Package monitorapi is the control API of a container's monitor process:
// the runc-style verbs (pause, resume) that act on the VM rather than on a
// process in it. Host side only; generated from monitor.proto.
package monitorapi
