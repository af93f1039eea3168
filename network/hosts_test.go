package network

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestHosts(t *testing.T) {
	ip := func(s string) net.IP { return net.ParseIP(s) }
	type op struct {
		remove bool
		name   string
		ip     net.IP
	}
	tests := []struct {
		name    string
		initial string // "" : no file
		ops     []op
		want    string
		wantErr error
	}{
		{"new file", "", []op{{name: "web", ip: ip("10.88.0.2")}}, "10.88.0.2 web\n", nil},
		{"two names", "", []op{{name: "web", ip: ip("10.88.0.2")}, {name: "db", ip: ip("10.88.0.3")}},
			"10.88.0.2 web\n10.88.0.3 db\n", nil},
		{"replace address", "", []op{{name: "web", ip: ip("10.88.0.2")}, {name: "web", ip: ip("10.88.0.9")}},
			"10.88.0.9 web\n", nil},
		{"remove", "", []op{{name: "web", ip: ip("10.88.0.2")}, {name: "db", ip: ip("10.88.0.3")}, {remove: true, name: "web"}},
			"10.88.0.3 db\n", nil},
		{"remove missing name and file", "", []op{{remove: true, name: "web"}}, "", nil},
		{"keeps comments and other names", "# managed\n10.0.0.1 gw router # the gateway\n10.0.0.2 Web\n",
			[]op{{remove: true, name: "router"}, {remove: true, name: "web"}},
			"# managed\n10.0.0.1 gw # the gateway\n", nil},
		{"bad name", "", []op{{name: "we b", ip: ip("10.88.0.2")}}, "", ErrInvalidArgument},
		{"no address", "", []op{{name: "web"}}, "", ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			if tt.initial != "" {
				must(t, os.WriteFile(path, []byte(tt.initial), 0o644))
			}
			var err error
			for _, o := range tt.ops {
				if o.remove {
					err = RemoveHost(path, o.name)
				} else {
					err = WriteHost(path, o.name, o.ip)
				}
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			got, rerr := os.ReadFile(path)
			if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				t.Fatal(rerr)
			}
			if string(got) != tt.want {
				t.Errorf("hosts file:\n%q\nwant\n%q", got, tt.want)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if e.Name() != "hosts" && e.Name() != "hosts.lock" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
