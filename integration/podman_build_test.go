package integration

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// podmanBuildContainerfile has RUN steps that write a file, show the
// network the step got and ping the gateway of that network, if any (the
// host's end of the engine's bridge). /etc/resolv.conf may be missing:
// without a network buildah mounts none (runc's RUN fails the same way).
const podmanBuildContainerfile = `FROM ` + podmanImage + `
RUN echo built > /built.txt
RUN ip addr || true; cat /etc/resolv.conf || echo "initos-net: no /etc/resolv.conf"
RUN gw=$(ip route | awk '/^default/ {print $3}'); \
    if [ -z "$gw" ]; then echo "initos-net: no default route"; exit 0; fi; \
    ping -c 1 -W 10 "$gw" && echo "initos-net: gateway $gw answers"
`

// eth0Flags finds the guest's eth0 and its flags in `ip addr` output.
var eth0Flags = regexp.MustCompile(`(?m)^\d+: eth0(?:@\S+)?: <([^>]*)>`)

// TestPodmanBuild runs `podman build` with RUN steps through the runtime
// (issue 10): buildah asks for a new network namespace, runs create,
// configures the namespace of the pid create reported with netavark, then
// runs start. Both the default network and --network none must build, and
// nothing may be left: no VM, no state dir, no disk image, and never a
// tap in the host's network namespace.
func TestPodmanBuild(t *testing.T) {
	p := newPodman(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(podmanBuildContainerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, network string
		wantEth0      bool           // the RUN steps have an eth0 with an address
		wantNet       *regexp.Regexp // in the build's output
	}{
		{"default-network", "", true, regexp.MustCompile(`(?m)^initos-net: gateway \S+ answers$`)},
		{"network-none", "none", false, regexp.MustCompile(`(?m)^initos-net: no default route$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.buildLeftovers(t)
			w := p.watchBuild(t)
			args := []string{"build", "--no-cache", "-f", filepath.Join(dir, "Containerfile"), "-t", "localhost/initos-build-" + tc.name}
			if p.initos {
				args = append(args, "--runtime", p.runtime)
			}
			if tc.network != "" {
				args = append(args, "--network", tc.network)
			}
			t0 := time.Now()
			r := p.run(t, nil, append(args, dir)...)
			ids, hostTap := w.stop()
			t.Logf("podman build (%d RUN containers) took %s", len(ids), time.Since(t0).Round(time.Millisecond))
			if r.code != 0 {
				t.Fatalf("podman %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
			if len(r.stderr) > 0 {
				t.Logf("podman build's stderr:\n%s", r.stderr)
			}
			if hostTap != "" {
				t.Errorf("a tap appeared in the host's network namespace during the build: %s", hostTap)
			}
			if !tc.wantNet.Match(r.stdout) {
				t.Errorf("build output does not match %q:\n%s", tc.wantNet, r.stdout)
			}
			m := eth0Flags.FindSubmatch(r.stdout)
			switch {
			case !tc.wantEth0 && m != nil:
				t.Errorf("a RUN step without a network has eth0:\n%s", r.stdout)
			case tc.wantEth0 && m == nil:
				t.Errorf("no eth0 in the RUN step's ip addr:\n%s", r.stdout)
			case tc.wantEth0 && (strings.Contains(string(m[1]), "NO-CARRIER") || !regexp.MustCompile(`inet \d+\.\d+\.\d+\.\d+/\d+ .*eth0`).Match(r.stdout)):
				// The step's first command already has a working NIC.
				t.Errorf("eth0 is not ready (flags %s) or has no address:\n%s", m[1], r.stdout)
			}
			if p.initos && len(ids) < 3 {
				t.Errorf("saw %d RUN containers in the state root, want at least 3 (%v)", len(ids), ids)
			}
			p.assertBuildLeftovers(t, before, ids)
		})
	}
}

// buildLeftovers counts what the runtime's containers hold on the host:
// VMs (qemu processes naming the runtime's state root), state dirs under
// the state root and disk images in the data dir.
type buildLeftovers struct {
	vms, stateDirs, disks []string
}

func (p *podman) buildLeftovers(t *testing.T) buildLeftovers {
	t.Helper()
	var l buildLeftovers
	if !p.initos {
		return l
	}
	for _, pr := range processesOf(p.stateRoot+"/", "") {
		if strings.Contains(pr, "qemu") {
			l.vms = append(l.vms, pr)
		}
	}
	l.stateDirs = dirNames(t, p.stateRoot)
	l.disks = dirNames(t, filepath.Join(env.cfg.DataDir, "disks"))
	return l
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// assertBuildLeftovers waits until the VMs, state dirs and disk images are
// as before the build, and no disk image names a container of the build.
func (p *podman) assertBuildLeftovers(t *testing.T, before buildLeftovers, ids []string) {
	t.Helper()
	if !p.initos {
		return
	}
	poll(t, settleTimeout, "the runtime's leftovers to be gone", func() (bool, string) {
		now := p.buildLeftovers(t)
		var left []string
		if len(now.vms) > len(before.vms) {
			left = append(left, "VMs: "+strings.Join(now.vms, "; "))
		}
		if len(now.stateDirs) > len(before.stateDirs) {
			left = append(left, "state dirs: "+strings.Join(now.stateDirs, ", "))
		}
		if len(now.disks) > len(before.disks) {
			left = append(left, "disk images: "+strings.Join(now.disks, ", "))
		}
		for _, d := range now.disks {
			for _, id := range ids {
				if strings.HasPrefix(d, id+"-") {
					left = append(left, "disk image of "+id+": "+d)
				}
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
}

// buildWatch records, while a build runs, the container ids that appear
// in the runtime's state root and whether a tap of ours ever shows in the
// host's network namespace.
type buildWatch struct {
	done    chan struct{}
	wg      sync.WaitGroup
	ids     map[string]bool
	hostTap string
}

func (p *podman) watchBuild(t *testing.T) *buildWatch {
	w := &buildWatch{done: make(chan struct{}), ids: map[string]bool{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			if p.initos {
				ents, _ := os.ReadDir(p.stateRoot)
				for _, e := range ents {
					w.ids[e.Name()] = true
				}
			}
			if ifs, err := net.Interfaces(); err == nil {
				for _, i := range ifs {
					if strings.HasPrefix(i.Name, "initos-tap") && w.hostTap == "" {
						w.hostTap = i.Name
					}
				}
			}
			select {
			case <-w.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			w.stop()
		}
	})
	return w
}

func (w *buildWatch) stop() (ids []string, hostTap string) {
	close(w.done)
	w.wg.Wait()
	for id := range w.ids {
		ids = append(ids, id)
	}
	return ids, w.hostTap
}
