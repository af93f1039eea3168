package runtime

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Switch-root (the seed's "the user OS can be executed using switch-root";
// docs/architecture.md "Switch-root"): the container's process is PID 1 of
// its VM, handed over by the agent (guestagent/handoff_linux.go), which
// stays beside it to serve exec, signals, stdio and the exit status.

// ModeAnnotation chooses how a container runs in its VM: ModeSwitchRoot or
// ModeSidecar (the default, except for init systems).
const ModeAnnotation = "org.initos.mode"

// The values of ModeAnnotation.
const (
	// ModeSidecar: the agent is PID 1 and the container's process its
	// child, in a PID namespace of its own when the spec asks.
	ModeSidecar = "sidecar"
	// ModeSwitchRoot: the container's process is PID 1 of the VM.
	ModeSwitchRoot = "switch-root"
)

// stopSignalAnnotation is the image's stop signal as podman passes it
// (image-spec's annotation).
const stopSignalAnnotation = "org.opencontainers.image.stopSignal"

// initSystems are the programs that run as switch-root without the
// annotation: an init system expects to be the machine's PID 1.
var initSystems = []string{"/sbin/init", "/usr/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd"}

// switchRoot says whether the container of spec runs as PID 1 of its VM:
// the annotation's choice, else whether it runs an init system (its
// process is one, or it stops with systemd's SIGRTMIN+3: podman's
// --systemd=always). A
// pod's containers share their VM, so none can be its PID 1.
func switchRoot(s *specs.Spec, pod bool) (bool, error) {
	mode, set := s.Annotations[ModeAnnotation]
	switch {
	case set && mode == ModeSwitchRoot:
		if pod {
			return false, fmt.Errorf("annotation %s=%s: a pod's containers share one VM, which none of them can be PID 1 of: run it outside a pod", ModeAnnotation, mode)
		}
		return true, nil
	case set && mode == ModeSidecar:
		return false, nil
	case set:
		return false, fmt.Errorf("annotation %s=%q: want %s or %s", ModeAnnotation, mode, ModeSwitchRoot, ModeSidecar)
	}
	if pod || s.Process == nil || len(s.Process.Args) == 0 {
		return false, nil
	}
	// podman's --systemd=always (and an image whose STOPSIGNAL is
	// systemd's) stops the container with SIGRTMIN+3, systemd's halt.
	if sig := s.Annotations[stopSignalAnnotation]; sig == "37" || strings.EqualFold(sig, "SIGRTMIN+3") || strings.EqualFold(sig, "RTMIN+3") {
		return true, nil
	}
	for _, p := range initSystems {
		if s.Process.Args[0] == p {
			return true, nil
		}
	}
	return false, nil
}

// initPanic is the kernel's line when PID 1 exits (kernel/exit.c: "Attempted
// to kill init! exitcode=0x%08x"); the code is a wait status.
var initPanic = regexp.MustCompile(`Attempted to kill init! exitcode=0x([0-9a-fA-F]{1,8})`)

// poweredOff are the kernel's lines of a machine that ends by itself
// (kernel/reboot.c: "reboot: Power down", "reboot: Restarting system").
var poweredOff = []string{"reboot: Power down", "reboot: Restarting system"}

// switchRootStatus is the exit status of a switch-root container whose VM
// ended before the agent could report it, read from the VM's console: a
// panic at PID 1's exit gives its status, a power off or reboot PID 1 asked
// for (systemd's poweroff, which ends the agent too) gives 0; ok is false
// when the console says neither.
func switchRootStatus(console string) (status int, ok bool) {
	if m := initPanic.FindAllStringSubmatch(console, -1); len(m) > 0 {
		v, err := strconv.ParseUint(m[len(m)-1][1], 16, 32)
		if err == nil {
			ws := syscall.WaitStatus(v)
			switch {
			case ws.Exited():
				return ws.ExitStatus(), true
			case ws.Signaled():
				return 128 + int(ws.Signal()), true
			}
		}
	}
	for _, line := range poweredOff {
		if strings.Contains(console, line) {
			return 0, true
		}
	}
	return 0, false
}

// switchRootKillGrace is how long the exit of a switch-root container's
// PID 1 may take to follow its SIGKILL before the VM itself is stopped.
// The kernel drops a SIGKILL to init, so the agent freezes PID 1 instead;
// should that not end it (the agent or its watcher gone), stopping the VM
// does, as a SIGKILL ends runc's container: the wait then reports 137.
var switchRootKillGrace = 10 * time.Second

// afterKill arms that for a switch-root container's PID 1 just sent
// SIGKILL; exited reports whether its exit is known.
func (inst *Instance) afterKill(exited func() bool) {
	if !inst.switchRoot {
		return
	}
	time.AfterFunc(switchRootKillGrace, func() {
		select {
		case <-inst.exited:
			return
		default:
		}
		if !exited() {
			_ = inst.stopVM() // its exit is the wait's
		}
	})
}
