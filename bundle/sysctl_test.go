package bundle

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidateSysctls(t *testing.T) {
	all := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.MountNamespace}
	without := func(drop specs.LinuxNamespaceType) []specs.LinuxNamespaceType {
		var out []specs.LinuxNamespaceType
		for _, n := range all {
			if n != drop {
				out = append(out, n)
			}
		}
		return out
	}
	tests := []struct {
		name    string
		sysctl  map[string]string
		ns      []specs.LinuxNamespaceType
		wantErr string // "" for none
	}{
		{name: "none", ns: all},
		{name: "net with netns", sysctl: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}, ns: all},
		{name: "net without netns", sysctl: map[string]string{"net.ipv4.ip_forward": "1"}, ns: without(specs.NetworkNamespace),
			wantErr: `sysctl "net.ipv4.ip_forward" is not allowed in the host's network namespace`},
		{name: "ipc list with ipcns", sysctl: map[string]string{"kernel.shmmax": "1", "kernel.sem": "1 2 3 4",
			"kernel.shm_rmid_forced": "1", "kernel.msgmax": "1", "kernel.msgmnb": "1", "kernel.msgmni": "1",
			"kernel.shmall": "1", "kernel.shmmni": "1"}, ns: all},
		{name: "mqueue with ipcns", sysctl: map[string]string{"fs.mqueue.msg_max": "20"}, ns: all},
		{name: "ipc without ipcns", sysctl: map[string]string{"kernel.shmmax": "1"}, ns: without(specs.IPCNamespace),
			wantErr: `sysctl "kernel.shmmax" is not allowed in the host's ipc namespace`},
		{name: "mqueue without ipcns", sysctl: map[string]string{"fs.mqueue.queues_max": "1"}, ns: without(specs.IPCNamespace),
			wantErr: `sysctl "fs.mqueue.queues_max" is not allowed in the host's ipc namespace`},
		{name: "domainname with utsns", sysctl: map[string]string{"kernel.domainname": "example"}, ns: all},
		{name: "domainname without utsns", sysctl: map[string]string{"kernel.domainname": "example"}, ns: without(specs.UTSNamespace),
			wantErr: `sysctl "kernel.domainname" is not in a separate kernel namespace`},
		{name: "hostname conflicts with the hostname field", sysctl: map[string]string{"kernel.hostname": "h"}, ns: all,
			wantErr: `sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field`},
		{name: "not namespaced", sysctl: map[string]string{"vm.swappiness": "10"}, ns: all,
			wantErr: `sysctl "vm.swappiness" is not in a separate kernel namespace`},
		{name: "kernel not in the ipc list", sysctl: map[string]string{"kernel.pid_max": "100"}, ns: all,
			wantErr: `sysctl "kernel.pid_max" is not in a separate kernel namespace`},
		{name: "fs outside mqueue", sysctl: map[string]string{"fs.file-max": "100"}, ns: all,
			wantErr: `sysctl "fs.file-max" is not in a separate kernel namespace`},
		{name: "slash", sysctl: map[string]string{"net.ipv4/../../vm.swappiness": "1"}, ns: all,
			wantErr: `must not contain '/'`},
		{name: "dot dot", sysctl: map[string]string{"net..ipv4": "1"}, ns: all,
			wantErr: `sysctl "net..ipv4": the name has an empty component`},
		{name: "trailing dot", sysctl: map[string]string{"net.": "1"}, ns: all,
			wantErr: `the name has an empty component`},
		{name: "empty name", sysctl: map[string]string{"": "1"}, ns: all, wantErr: "empty sysctl name"},
		{name: "first bad one in name order", sysctl: map[string]string{"vm.b": "1", "vm.a": "1", "net.core.somaxconn": "1"}, ns: all,
			wantErr: `sysctl "vm.a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Sysctl: tt.sysctl}}
			for _, n := range tt.ns {
				spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: n})
			}
			err := validateSysctls(spec)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("validateSysctls: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("validateSysctls: no error, want %q", tt.wantErr)
			case err != nil && (!strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "linux.sysctl: ")):
				t.Errorf("error %q, want linux.sysctl: ...%q", err, tt.wantErr)
			}
		})
	}
}

// A refused sysctl makes Load fail with ErrInvalidBundle.
func TestLoadRefusesSysctl(t *testing.T) {
	dir := writeBundle(t, specMap(t, func(m map[string]any) {
		m["linux"].(map[string]any)["sysctl"] = map[string]any{"vm.swappiness": "10"}
	}))
	_, err := Load(dir)
	if !errors.Is(err, ErrInvalidBundle) || !strings.Contains(err.Error(), `sysctl "vm.swappiness" is not in a separate kernel namespace`) {
		t.Fatalf("Load: %v, want ErrInvalidBundle naming vm.swappiness", err)
	}
}
