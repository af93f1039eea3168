package runtime

import (
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestSwitchRootMode(t *testing.T) {
	spec := func(ann string, args ...string) *specs.Spec {
		s := &specs.Spec{Process: &specs.Process{Args: args}}
		if ann != "" {
			s.Annotations = map[string]string{ModeAnnotation: ann}
		}
		return s
	}
	tests := []struct {
		name    string
		spec    *specs.Spec
		pod     bool
		want    bool
		wantErr string
	}{
		{"default", spec("", "sh"), false, false, ""},
		{"annotation", spec("switch-root", "sh"), false, true, ""},
		{"sidecar", spec("sidecar", "/sbin/init"), false, false, ""},
		{"systemd", spec("", "/lib/systemd/systemd"), false, true, ""},
		{"init", spec("", "/sbin/init", "--log-level=debug"), false, true, ""},
		{"init in a pod stays a member", spec("", "/sbin/init"), true, false, ""},
		{"annotation in a pod", spec("switch-root", "sh"), true, false, "a pod's containers share one VM"},
		{"bad value", spec("switchroot", "sh"), false, false, `org.initos.mode="switchroot": want switch-root or sidecar`},
		{"no process", &specs.Spec{}, false, false, ""},
		{"podman --systemd=always", &specs.Spec{Process: &specs.Process{Args: []string{"/usr/bin/my-init"}},
			Annotations: map[string]string{"org.opencontainers.image.stopSignal": "37"}}, false, true, ""},
		{"another stop signal", &specs.Spec{Process: &specs.Process{Args: []string{"sh"}},
			Annotations: map[string]string{"org.opencontainers.image.stopSignal": "15"}}, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := switchRoot(tt.spec, tt.pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("switchRoot: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("switchRoot = %t, %v; want %t", got, err, tt.want)
			}
		})
	}
}

func TestSwitchRootStatus(t *testing.T) {
	tests := []struct {
		name    string
		console string
		want    int
		ok      bool
	}{
		{"exit 3", "[ 9.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300\n", 3, true},
		{"killed by SIGSEGV", "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n", 139, true},
		{"the last panic counts", "Attempted to kill init! exitcode=0x00000100\nAttempted to kill init! exitcode=0x00000200\n", 2, true},
		{"power off", "[ 20.0] systemd-shutdown[1]: Powering off.\n[ 20.1] reboot: Power down\n", 0, true},
		{"reboot", "[ 20.1] reboot: Restarting system\n", 0, true},
		{"nothing said", "[ 1.0] Run /init as init process\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := switchRootStatus(tt.console)
			if got != tt.want || ok != tt.ok {
				t.Errorf("switchRootStatus = %d, %t; want %d, %t", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestAfterKill: a switch-root PID 1 whose exit does not follow its
// SIGKILL within the grace gets its VM stopped; one that exits, or a
// container that is not switch-root, keeps it.
func TestAfterKill(t *testing.T) {
	defer func(g time.Duration) { switchRootKillGrace = g }(switchRootKillGrace)
	switchRootKillGrace = 20 * time.Millisecond
	for _, tt := range []struct {
		name       string
		switchRoot bool
		exited     bool
		wantStops  int
	}{
		{"no exit: the VM is stopped", true, false, 1},
		{"exited in time", true, true, 0},
		{"not switch-root", false, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newFakeVM(vmm.Config{ID: "c"}, nil, fakeVMScript{})
			inst := &Instance{ID: "c", vm: v, switchRoot: tt.switchRoot, exited: make(chan struct{})}
			go func() { _ = v.Wait(); close(inst.exited) }()
			inst.afterKill(func() bool { return tt.exited })
			time.Sleep(200 * time.Millisecond)
			if got := v.stops(); got != tt.wantStops {
				t.Errorf("VM stopped %d times, want %d", got, tt.wantStops)
			}
			v.exit(nil, nil)
		})
	}
}
