package runtime

import (
	"fmt"
	"os"
	"regexp"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Pods under the runc CLI (podman's pods, `--network container:X`): a
// container whose spec names the network namespace of another container
// of ours, /proc/<pid>/ns/net with the pid create reported for it (its
// monitor's), joins that container's VM, as a CRI pod's members join their
// sandbox's (AddContainer): the VM owns the network (one address, one
// NIC), so sharing the network means sharing the VM. The member still has
// a monitor of its own (the pid conmon waits for, which exits with the
// member's status), which asks the sandbox's monitor over memberSock to
// add the member to its VM and then drives the member's processes through
// the sandbox monitor's forwarded agent service.
//
// The sandbox's monitor lives in a private mount namespace made before the
// member's rootfs (podman's overlay) was mounted, so it cannot bind that
// path: the member's monitor, whose namespace was made after, sends it the
// rootfs and each bind source as a detached mount tree (open_tree) with
// the request, and the sandbox's monitor attaches them in its root share
// and shared directory (move_mount).

// memberSock is the socket of a VM's monitor that takes pod members.
const memberSock = "member.sock"

// monitorSandboxEnv names the container whose VM the monitor's container
// joins; create sets it (podSandbox), the monitor unsets it.
const monitorSandboxEnv = "INITOS_MONITOR_SANDBOX"

// memberRequest is one message of a member's monitor to its sandbox's.
type memberRequest struct {
	// Op is memberAdd (the first message) or memberRemove.
	Op     string      `json:"op"`
	ID     string      `json:"id,omitempty"`
	Bundle string      `json:"bundle,omitempty"`
	Rootfs string      `json:"rootfs,omitempty"`
	Spec   *specs.Spec `json:"spec,omitempty"`
	// Trees says what the descriptors sent with the message are: the
	// detached mount tree of each path, in order.
	Trees []treeRef `json:"trees,omitempty"`
}

// treeRef names a detached mount tree: the host path it was made of and
// whether it holds the mounts below the path too (a recursive bind).
type treeRef struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
}

const (
	memberAdd    = "add"
	memberRemove = "remove"
)

// memberReply answers a memberRequest: an error, or the VM's driver.
type memberReply struct {
	Error  string `json:"error,omitempty"`
	Driver string `json:"driver,omitempty"`
}

// maxMemberMessage bounds one message on memberSock (a spec with a seccomp
// profile is some tens of kB).
const maxMemberMessage = 1 << 20

// mountTrees are detached mount trees that another mount namespace made of
// host paths (treeRef), each used once: a member's rootfs and bind sources
// as its own monitor sees them. A nil mountTrees holds none: paths are
// bound as this namespace sees them.
type mountTrees map[treeRef][]*os.File

// newMountTrees pairs the descriptors of a request with its refs.
func newMountTrees(refs []treeRef, files []*os.File) (mountTrees, error) {
	if len(files) != len(refs) {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("the request names %d mount trees and carries %d", len(refs), len(files))
	}
	t := mountTrees{}
	for i, f := range files {
		t.add(refs[i], f)
	}
	return t, nil
}

func (t mountTrees) add(r treeRef, f *os.File) { t[r] = append(t[r], f) }

// peek is the next tree of path (nil: none).
func (t mountTrees) peek(path string, recursive bool) *os.File {
	if fs := t[treeRef{path, recursive}]; len(fs) > 0 {
		return fs[0]
	}
	return nil
}

// take removes the next tree of path and returns it (nil: none); the
// caller closes it.
func (t mountTrees) take(path string, recursive bool) *os.File {
	r := treeRef{path, recursive}
	fs := t[r]
	if len(fs) == 0 {
		return nil
	}
	t[r] = fs[1:]
	return fs[0]
}

// close closes the trees not taken.
func (t mountTrees) close() {
	for r, fs := range t {
		for _, f := range fs {
			f.Close()
		}
		delete(t, r)
	}
}

// statSource stats src, or the tree t holds of it.
func statSource(t mountTrees, src string, recursive bool) (os.FileInfo, error) {
	if f := t.peek(src, recursive); f != nil {
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("the mount tree of %q: %w", src, err)
		}
		return fi, nil
	}
	return os.Stat(src)
}

var procNetnsRE = regexp.MustCompile(`^/proc/([0-9]+)/ns/net$`)

// podSandbox is the container of ours whose VM a container with spec s
// joins ("": none, it gets a VM of its own): the one whose create reported
// the pid in s's network namespace path, or, when that one is itself a
// member, its sandbox.
func podSandbox(c Config, s *specs.Spec) (string, error) {
	path, ok := NetnsPath(s)
	if !ok {
		return "", nil
	}
	m := procNetnsRE.FindStringSubmatch(path)
	if m == nil {
		return "", nil
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil {
		return "", nil
	}
	states, err := List(c)
	if err != nil {
		return "", err
	}
	for _, st := range states {
		if st.MonitorPid != pid || st.Status == StatusStopped {
			continue
		}
		if st.Status == StatusCreating {
			return "", fmt.Errorf("joining the network of container %q (%s): it is still being created: %w", st.ID, path, ErrWrongState)
		}
		if st.Sandbox != "" {
			return st.Sandbox, nil
		}
		return st.ID, nil
	}
	return "", nil
}
