package guestagent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ModulesDir holds the initrd's modules and load.order (docs/contracts.md).
const ModulesDir = "/lib/modules"

// moduleEntry is one line of load.order: "<name>.ko <group>[,<group>...]".
type moduleEntry struct {
	File   string
	Groups []string
}

// parseLoadOrder reads load.order. Blank lines and lines starting with '#'
// are skipped; anything else must be a .ko file name and a group list.
func parseLoadOrder(r io.Reader) ([]moduleEntry, error) {
	var entries []moduleEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, errorf(ErrInvalidArgument, "load.order line %d %q: want \"<name>.ko <group>[,<group>...]\"", n, line)
		}
		file := fields[0]
		if !strings.HasSuffix(file, ".ko") || strings.Contains(file, "/") || file == ".ko" {
			return nil, errorf(ErrInvalidArgument, "load.order line %d: %q is not a module file name", n, file)
		}
		var groups []string
		for _, g := range strings.Split(fields[1], ",") {
			if g != "" {
				groups = append(groups, g)
			}
		}
		if len(groups) == 0 {
			return nil, errorf(ErrInvalidArgument, "load.order line %d: module %q has no group", n, file)
		}
		entries = append(entries, moduleEntry{File: file, Groups: groups})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading load.order: %w", err)
	}
	return entries, nil
}

// selectModules keeps the entries, in order, of which a group is requested;
// all of them when initos.load= is absent.
func selectModules(entries []moduleEntry, all bool, groups []string) []moduleEntry {
	if all {
		return entries
	}
	var out []moduleEntry
	for _, e := range entries {
		if slices.ContainsFunc(e.Groups, func(g string) bool { return slices.Contains(groups, g) }) {
			out = append(out, e)
		}
	}
	return out
}

// loadModules loads each entry from dir with load, which must treat "already
// loaded" as success, and tells loaded (when not nil) of each module it
// loaded and how long that took. It goes on after a failure and returns
// every failure, each naming its module.
func loadModules(dir string, entries []moduleEntry, load func(path string) error, loaded func(file string, d time.Duration)) error {
	var errs []error
	for _, e := range entries {
		start := time.Now()
		path := filepath.Join(dir, e.File)
		if err := load(path); errors.Is(err, errModuleLive) {
			continue // no load, nothing to time
		} else if err != nil {
			errs = append(errs, fmt.Errorf("loading module %q: %w", e.File, err))
			continue
		}
		if loaded != nil {
			loaded(e.File, time.Since(start))
		}
	}
	return errors.Join(errs...)
}

// loadGroups loads, in load.order's order, the modules of dir's load.order
// that belong to one of groups (all of them with all) and returns how many
// it selected of how many there are. A missing load.order is an error that
// wraps fs.ErrNotExist (an initrd without modules).
func loadGroups(dir string, all bool, groups []string, load func(path string) error, loaded func(file string, d time.Duration)) (selected, total int, err error) {
	f, err := os.Open(filepath.Join(dir, "load.order"))
	if err != nil {
		return 0, 0, err
	}
	entries, err := parseLoadOrder(f)
	f.Close()
	if err != nil {
		return 0, 0, err
	}
	sel := selectModules(entries, all, groups)
	return len(sel), len(entries), loadModules(dir, sel, load, loaded)
}

// debugLoaded is a loadGroups callback that logs each module's load time
// (initos.debug=1).
func debugLoaded(log *logger) func(file string, d time.Duration) {
	return func(file string, d time.Duration) {
		log.Debugf("module %s loaded in %v", file, d.Round(time.Millisecond))
	}
}
