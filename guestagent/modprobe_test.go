package guestagent

import (
	"bytes"
	"compress/gzip"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/initos-runtime/initos-runtime/initrd"
	"github.com/initos-runtime/initos-runtime/vmm"
)

func TestModulesTag(t *testing.T) {
	if modulesTag != vmm.ModulesTag {
		t.Errorf("the agent mounts tag %q, the drivers attach %q", modulesTag, vmm.ModulesTag)
	}
}

func TestParseModprobeArgs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-q", "--", "rtnl-link-bridge"}, "rtnl-link-bridge"}, // the kernel's
		{[]string{"bridge"}, "bridge"},
		{[]string{"-q", "fs-overlay"}, "fs-overlay"},
		{[]string{"--", "-odd"}, "-odd"},
		{[]string{"--quiet", "--", "net-pf-10"}, "net-pf-10"},
	} {
		if got, err := parseModprobeArgs(tt.args); err != nil || got != tt.want {
			t.Errorf("parseModprobeArgs(%q) = %q, %v; want %q", tt.args, got, err, tt.want)
		}
	}
	for _, bad := range [][]string{
		nil,
		{"-q"},
		{"-q", "--"},
		{"-r", "bridge"},
		{"--remove", "bridge"},
		{"-a", "bridge", "stp"},
		{"bridge", "stp"},
		{"-q", "--", "bridge", "stp"},
		{"-d", "/tmp", "bridge"},
	} {
		if got, err := parseModprobeArgs(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("parseModprobeArgs(%q) = %q, %v; want ErrInvalidArgument", bad, got, err)
		}
	}
}

// testModIndex is an index in the initrd's format: bridge needs stp and
// llc, overlay is compressed, tun answers a char-major wildcard, ipv6 is
// built in.
const testModIndex = `initos-modindex v1
a 9p_virtio 9pnet_virtio
a char_major_10_* tun
a fs_overlay overlay
a net_pf_10 ipv6
a rtnl_link_bridge bridge
b ipv6
m 9pnet_virtio kernel/net/9p/9pnet_virtio.ko - - -
m bridge kernel/net/bridge/bridge.ko stp,llc - -
m llc kernel/net/802/llc.ko - - -
m overlay kernel/fs/overlayfs/overlay.ko.xz - - -
m stp kernel/net/802/stp.ko llc - -
m tun kernel/drivers/net/tun.ko - - -
`

func readTestModIndex(t *testing.T) *initrd.ModIndex {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(testModIndex))
	zw.Close()
	ix, err := initrd.ReadModIndex(&b)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// fakeModprobeSys records what a request does.
type fakeModprobeSys struct {
	ix       *initrd.ModIndex
	indexErr error
	initrd   map[string]bool // modules the initrd has
	mountErr error
	loadErr  map[string]error // by path

	mu     sync.Mutex
	live   map[string]bool
	mounts int
	loads  []string
}

func (f *fakeModprobeSys) index() (*initrd.ModIndex, error) { return f.ix, f.indexErr }

func (f *fakeModprobeSys) loaded(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live[name]
}

func (f *fakeModprobeSys) inInitrd(name string) (string, bool) {
	return "/lib/modules/" + name + ".ko", f.initrd[name]
}

func (f *fakeModprobeSys) mountShare() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mountErr != nil {
		return "", f.mountErr
	}
	f.mounts++
	return "/run/initos/modules", nil
}

func (f *fakeModprobeSys) load(path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.loadErr[path]; err != nil {
		return err
	}
	f.loads = append(f.loads, path)
	name, _, _ := strings.Cut(path[strings.LastIndex(path, "/")+1:], ".")
	f.live[name] = true
	return nil
}

func newFakeModprobeSys(t *testing.T) *fakeModprobeSys {
	return &fakeModprobeSys{ix: readTestModIndex(t), initrd: map[string]bool{"9pnet_virtio": true}, live: map[string]bool{}, loadErr: map[string]error{}}
}

func TestModprobe(t *testing.T) {
	const share = "/run/initos/modules/kernel/"
	for _, tt := range []struct {
		name      string
		live      []string
		wantLoads []string
		wantMount bool
		builtin   bool
	}{
		{name: "rtnl-link-bridge", wantLoads: []string{share + "net/802/llc.ko", share + "net/802/stp.ko", share + "net/bridge/bridge.ko"}, wantMount: true},
		{name: "bridge", live: []string{"llc"}, wantLoads: []string{share + "net/802/stp.ko", share + "net/bridge/bridge.ko"}, wantMount: true},
		{name: "bridge", live: []string{"llc", "stp", "bridge"}},
		{name: "fs-overlay", wantLoads: []string{share + "fs/overlayfs/overlay.ko.xz"}, wantMount: true},
		{name: "char-major-10-200", wantLoads: []string{share + "drivers/net/tun.ko"}, wantMount: true},
		// In the initrd: the share is not needed.
		{name: "9p-virtio", wantLoads: []string{"/lib/modules/9pnet_virtio.ko"}},
		{name: "net-pf-10", builtin: true},
	} {
		t.Run(tt.name+" "+strings.Join(tt.live, ","), func(t *testing.T) {
			sys := newFakeModprobeSys(t)
			for _, l := range tt.live {
				sys.live[l] = true
			}
			res, err := modprobe(sys, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sys.loads, tt.wantLoads) {
				t.Errorf("loaded %q, want %q", sys.loads, tt.wantLoads)
			}
			if (sys.mounts > 0) != tt.wantMount {
				t.Errorf("%d mounts of the share, want one: %v", sys.mounts, tt.wantMount)
			}
			if res.builtin != tt.builtin || len(res.loaded) != len(tt.wantLoads) {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestModprobeErrors(t *testing.T) {
	sys := newFakeModprobeSys(t)
	if _, err := modprobe(sys, "wireguard"); !errors.Is(err, initrd.ErrModuleNotFound) {
		t.Errorf("unknown module: %v", err)
	}
	for _, bad := range []string{"../../../tmp/evil", "/tmp/evil.ko", "..", "a b"} {
		if _, err := modprobe(sys, bad); !errors.Is(err, initrd.ErrBadModuleName) {
			t.Errorf("%q: %v, want ErrBadModuleName", bad, err)
		}
	}
	if len(sys.loads) != 0 || sys.mounts != 0 {
		t.Errorf("failed requests loaded %q, mounted %d times", sys.loads, sys.mounts)
	}

	errMount := errors.New("no such tag")
	sys = newFakeModprobeSys(t)
	sys.mountErr = errMount
	if _, err := modprobe(sys, "bridge"); !errors.Is(err, errMount) || !strings.Contains(err.Error(), `"llc"`) {
		t.Errorf("mount failure: %v", err)
	}

	// A dependency that fails stops the request before the module.
	errLoad := errors.New("Unknown symbol in module")
	sys = newFakeModprobeSys(t)
	sys.loadErr["/run/initos/modules/kernel/net/802/stp.ko"] = errLoad
	if _, err := modprobe(sys, "bridge"); !errors.Is(err, errLoad) || !strings.Contains(err.Error(), `"stp"`) {
		t.Errorf("load failure: %v", err)
	}
	if want := []string{"/run/initos/modules/kernel/net/802/llc.ko"}; !slices.Equal(sys.loads, want) {
		t.Errorf("loaded %q, want %q", sys.loads, want)
	}

	errIndex := errors.New("no index")
	sys = newFakeModprobeSys(t)
	sys.indexErr = errIndex
	if _, err := modprobe(sys, "bridge"); !errors.Is(err, errIndex) {
		t.Errorf("index failure: %v", err)
	}
}

// Concurrent requests for modules with shared dependencies all succeed
// (the real load treats EEXIST as success, the fake a second load).
func TestModprobeConcurrent(t *testing.T) {
	sys := newFakeModprobeSys(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = modprobe(sys, []string{"bridge", "rtnl-link-bridge", "stp"}[i%3])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"llc", "stp", "bridge"} {
		if !sys.live[m] {
			t.Errorf("%s not loaded", m)
		}
	}
}

func TestRunModprobeWith(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		live     []string
		wantCode int
		wantLog  string
	}{
		{[]string{"-q", "--", "rtnl-link-bridge"}, nil, 0, "initos-agent: modprobe rtnl-link-bridge: loaded llc stp bridge in "},
		{[]string{"-q", "--", "bridge"}, []string{"llc", "stp", "bridge"}, 0, "initos-agent: modprobe bridge: already loaded\n"},
		{[]string{"-q", "--", "net-pf-10"}, nil, 0, "initos-agent: modprobe net-pf-10: built in\n"},
		{[]string{"-q", "--", "wireguard"}, nil, 1, "initos-agent: modprobe wireguard: no such module\n"},
		{[]string{"-q", "--", "../x"}, nil, 1, `initos-agent: modprobe ../x: module "../x": bad module name` + "\n"},
		{[]string{"-r", "bridge"}, nil, 2, `initos-agent: modprobe: option "-r": only -q is supported` + "\n"},
	} {
		sys := newFakeModprobeSys(t)
		for _, l := range tt.live {
			sys.live[l] = true
		}
		var out bytes.Buffer
		code := runModprobeWith(sys, newLogger(&out, false), tt.args)
		if code != tt.wantCode || !strings.HasPrefix(out.String(), tt.wantLog) || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, log %q; want %d, %q", tt.args, code, out.String(), tt.wantCode, tt.wantLog)
		}
	}
}
