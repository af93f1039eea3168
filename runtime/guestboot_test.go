package runtime

import (
	"strings"
	"testing"
	"time"

	"github.com/initos-runtime/initos-runtime/agentapi"
)

func TestGuestBoot(t *testing.T) {
	many := make([]*agentapi.BootStep, 100)
	for i := range many {
		many[i] = &agentapi.BootStep{Name: "module m", Micros: 1}
	}
	tests := []struct {
		name  string
		r     *agentapi.PingResponse
		want  GuestBoot
		steps int
		str   string
	}{
		{"no reply", nil, GuestBoot{}, 0, "kernel=? agent=? (the agent reports no boot trace)"},
		{"an older agent", &agentapi.PingResponse{BootMillis: 1200}, GuestBoot{}, 0, "kernel=? agent=?"},
		{"a trace", &agentapi.PingResponse{InitMicros: 940000, ReadyMicros: 1100000, BootSteps: []*agentapi.BootStep{
			{Name: "mounts", Micros: 20000}, {Name: "module virtio_ring", Micros: 15000}, {Name: "transport", Micros: 125000},
		}}, GuestBoot{Init: 940 * time.Millisecond, Ready: 1100 * time.Millisecond}, 3,
			"kernel=940ms agent=160ms (mounts=20ms module:virtio_ring=15ms transport=125ms)"},
		{"bounded", &agentapi.PingResponse{InitMicros: 1 << 62, ReadyMicros: 1 << 63, BootSteps: many},
			GuestBoot{Init: maxGuestTime, Ready: maxGuestTime}, maxGuestSteps, "kernel=1h0m0s agent=0s"},
		{"a hostile name", &agentapi.PingResponse{InitMicros: 1, ReadyMicros: 2, BootSteps: []*agentapi.BootStep{
			{Name: "evil\x1b[2J\nname" + strings.Repeat("x", 200), Micros: 1},
		}}, GuestBoot{Init: time.Microsecond, Ready: 2 * time.Microsecond}, 1, "(evil[2J:name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := guestBoot(tt.r)
			if g.Init != tt.want.Init || g.Ready != tt.want.Ready || len(g.Steps) != tt.steps {
				t.Fatalf("guestBoot = %+v", g)
			}
			for _, s := range g.Steps {
				if len(s.Name) > maxGuestStepName+3 || strings.ContainsAny(s.Name, "\x1b\n") {
					t.Errorf("step name %q not bounded or not clean", s.Name)
				}
			}
			if s := g.String(); !strings.Contains(s, tt.str) {
				t.Errorf("String() = %q, want it to contain %q", s, tt.str)
			}
		})
	}
}
