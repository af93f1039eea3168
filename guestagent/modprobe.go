package guestagent

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/initos-runtime/initos-runtime/initrd"
)

// The guest kernel's modprobe (docs/contracts.md): request_module runs
// /sbin/initos-modprobe (a symlink to /init in the initrd, so the agent
// binary under another name) as "initos-modprobe -q -- NAME", as root in
// the initial namespaces with the agent's root. It resolves NAME with the
// kernel's module index (initrd.ModIndex: the whole tree's names, paths,
// dependencies and aliases), and loads what is not loaded yet, each after
// what it needs: from the initrd when the file is there, else from the
// kernel's modules share, which it mounts the first time (read-only; the
// index names only files below it).

// ModprobePath is what the agent writes to /proc/sys/kernel/modprobe.
const ModprobePath = "/sbin/" + initrd.ModprobeName

// ModIndexPath is the module index in the initrd.
const ModIndexPath = ModulesDir + "/" + initrd.ModIndexName

// modulesTag is the modules share's tag (vmm.ModulesTag) and
// modulesMountPoint where the first request mounts it.
const (
	modulesTag        = "initos-modules"
	modulesMountPoint = "/run/initos/modules"
)

// parseModprobeArgs returns the name that modprobe is asked to load. It
// takes the kernel's form, "-q -- NAME", and the shorter ones a person
// would type ("NAME", "-q NAME", "-- NAME"); it refuses every other option
// (no removal, no file names, one name only).
func parseModprobeArgs(args []string) (string, error) {
	var names []string
	dashdash := false
	for _, a := range args {
		switch {
		case dashdash:
			names = append(names, a)
		case a == "--":
			dashdash = true
		case a == "-q" || a == "--quiet":
		case strings.HasPrefix(a, "-"):
			return "", errorf(ErrInvalidArgument, "modprobe: option %q: only -q is supported", a)
		default:
			names = append(names, a)
		}
	}
	if len(names) != 1 {
		return "", errorf(ErrInvalidArgument, "modprobe: want one module name (modprobe -q -- NAME), got %q", names)
	}
	return names[0], nil
}

// modprobeSys is what a request touches; realModprobeSys in the guest,
// fakes in tests.
type modprobeSys interface {
	// index reads the module index.
	index() (*initrd.ModIndex, error)
	// loaded reports whether module name is in the kernel (/sys/module).
	loaded(name string) bool
	// inInitrd returns the initrd's copy of module name, if there is one.
	inInitrd(name string) (string, bool)
	// mountShare mounts the modules share once and returns where.
	mountShare() (string, error)
	// load loads one module file; one already loaded is no error.
	load(path string) error
}

// modprobeResult says what a request did, for its log line.
type modprobeResult struct {
	loaded  []string // modules loaded, in order
	builtin bool     // the name is built into the kernel
}

// modprobe serves one request for name: it loads the modules
// ModIndex.Request names, in order, skipping those already loaded. A name
// the index does not know wraps initrd.ErrModuleNotFound.
func modprobe(sys modprobeSys, name string) (modprobeResult, error) {
	var res modprobeResult
	ix, err := sys.index()
	if err != nil {
		return res, err
	}
	mods, err := ix.Request(name)
	if err != nil {
		return res, err
	}
	res.builtin = len(mods) == 0
	for _, m := range mods {
		if sys.loaded(m.Name) {
			continue
		}
		path, ok := sys.inInitrd(m.Name)
		if !ok {
			dir, err := sys.mountShare()
			if err != nil {
				return res, fmt.Errorf("loading module %q: %w", m.Name, err)
			}
			path = filepath.Join(dir, filepath.FromSlash(m.Path))
		}
		if err := sys.load(path); err != nil {
			return res, fmt.Errorf("loading module %q: %w", m.Name, err)
		}
		res.loaded = append(res.loaded, m.Name)
	}
	return res, nil
}

// runModprobeWith is the modprobe program: it parses args, serves the
// request and logs one line; the exit status is 0 when the module is
// there (loaded now, before, or built in), 1 when it is not, 2 for bad
// arguments.
func runModprobeWith(sys modprobeSys, log *logger, args []string) int {
	name, err := parseModprobeArgs(args)
	if err != nil {
		log.Printf("%v", err)
		return 2
	}
	start := time.Now()
	res, err := modprobe(sys, name)
	switch {
	case errors.Is(err, initrd.ErrModuleNotFound):
		log.Printf("modprobe %s: no such module", name)
		return 1
	case err != nil:
		log.Printf("modprobe %s: %v", name, err)
		return 1
	case res.builtin:
		log.Printf("modprobe %s: built in", name)
	case len(res.loaded) == 0:
		log.Printf("modprobe %s: already loaded", name)
	default:
		log.Printf("modprobe %s: loaded %s in %v", name, strings.Join(res.loaded, " "), time.Since(start).Round(time.Millisecond))
	}
	return 0
}
