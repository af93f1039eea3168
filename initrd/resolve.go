package initrd

import (
	"fmt"
	"slices"
	"strings"
)

// Module is one module to load, in a list where everything it needs comes
// before it.
type Module struct {
	Name     string   // normalised name; the initrd file is Name+".ko"
	Path     string   // the module file in the tree (maybe compressed)
	Depends  []string // hard dependencies that are module files
	SoftPre  []string // softdep pre: modules found in the tree
	SoftPost []string // softdep post: modules found in the tree
	Groups   []string // groups that need it (ResolveGroups), in GroupNames order
}

// groups are the module groups of docs/contracts.md, in initrd order, with
// the modules each asks for; Resolve adds what those need.
var groups = []struct {
	name  string
	roots []string
}{
	{"mmio", []string{"virtio_mmio"}},
	{"pci", []string{"virtio_pci"}},
	{"blk", []string{"virtio_blk"}},
	{"btrfs", []string{"btrfs"}},
	{"console", []string{"virtio_console"}},
	{"net", []string{"virtio_net"}},
	{"virtiofs", []string{"virtiofs"}},
	{"9p", []string{"9p", "9pnet_virtio"}},
	{"vsock", []string{"vmw_vsock_virtio_transport"}},
}

// GroupNames returns the module groups of docs/contracts.md in initrd order.
func GroupNames() []string {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.name
	}
	return names
}

// GroupModules returns the modules group asks for, without their
// dependencies.
func GroupModules(group string) ([]string, error) {
	for _, g := range groups {
		if g.name == group {
			return slices.Clone(g.roots), nil
		}
	}
	return nil, fmt.Errorf("module group %q (known: %s): %w", group, strings.Join(GroupNames(), ", "), ErrUnknownGroup)
}

// Resolve returns the modules of ix that wanted needs, each after its
// softdep pre: modules and its dependencies, and before its softdep post:
// modules. A wanted name may be a module name or an alias; wanted modules
// built into the kernel need nothing. Softdeps are taken when the tree has
// them (as modprobe does) and skipped otherwise; a missing wanted module or
// dependency is an error naming it and what needs it.
func Resolve(ix *Index, wanted []string) ([]Module, error) {
	return resolve(ix, wanted)
}

// moduleSource is what the resolver needs of a module tree: the host's
// Index, or the ModIndex the guest resolves its kernel's requests with.
type moduleSource interface {
	info(name string) (*ModInfo, error)
	file(name string) string // the module file of a module name
	lookupName(name string) lookupResult
	lookup(name string) (lookupResult, error)
	where() string // the tree, for errors
}

// resolve is Resolve over any moduleSource.
func resolve(src moduleSource, wanted []string) ([]Module, error) {
	r := resolver{src: src, state: map[string]int{}}
	for _, w := range wanted {
		lr, err := src.lookup(w)
		if err != nil {
			return nil, err
		}
		if lr.builtin {
			continue
		}
		if lr.module == "" {
			return nil, fmt.Errorf("module %q (wanted) not in %q or built in: %w", w, src.where(), ErrModuleNotFound)
		}
		if err := r.visit(lr.module); err != nil {
			return nil, err
		}
	}
	return r.out, nil
}

// ResolveGroups resolves the modules of groups (nil: all of GroupNames) into
// one load order, and records in each module the groups that need it, so
// loading the modules of any subset of groups in list order works.
func ResolveGroups(ix *Index, groupNames []string) ([]Module, error) {
	selected, err := normalizeGroups(groupNames)
	if err != nil {
		return nil, err
	}
	var all []string
	need := map[string][]string{}
	for _, g := range selected {
		roots, _ := GroupModules(g)
		all = append(all, roots...)
		mods, err := Resolve(ix, roots)
		if err != nil {
			return nil, fmt.Errorf("resolving module group %q: %w", g, err)
		}
		for _, m := range mods {
			need[m.Name] = append(need[m.Name], g)
		}
	}
	mods, err := Resolve(ix, all)
	if err != nil {
		return nil, err
	}
	for i := range mods {
		mods[i].Groups = need[mods[i].Name]
	}
	return mods, nil
}

// normalizeGroups checks group names and returns them deduplicated in
// GroupNames order; nil or empty means all groups.
func normalizeGroups(names []string) ([]string, error) {
	if len(names) == 0 {
		return GroupNames(), nil
	}
	want := map[string]bool{}
	for _, n := range names {
		if _, err := GroupModules(n); err != nil {
			return nil, err
		}
		want[n] = true
	}
	var out []string
	for _, g := range groups {
		if want[g.name] {
			out = append(out, g.name)
		}
	}
	return out, nil
}

const (
	unvisited = iota
	visiting
	done
)

type resolver struct {
	src   moduleSource
	state map[string]int
	stack []string
	out   []Module
}

func (r *resolver) visit(name string) error {
	switch r.state[name] {
	case done:
		return nil
	case visiting:
		i := slices.Index(r.stack, name)
		cycle := append(slices.Clone(r.stack[i:]), name)
		return fmt.Errorf("%s in %q: %w", strings.Join(cycle, " -> "), r.src.where(), ErrDependencyCycle)
	}
	r.state[name] = visiting
	r.stack = append(r.stack, name)
	mi, err := r.src.info(name)
	if err != nil {
		return err
	}
	m := Module{Name: name, Path: r.src.file(name)}
	m.SoftPre, err = r.soft(name, mi.SoftPre)
	if err != nil {
		return err
	}
	for _, d := range m.SoftPre {
		if err := r.visit(d); err != nil {
			return err
		}
	}
	for _, d := range mi.Depends {
		lr := r.src.lookupName(d)
		if lr.builtin {
			continue
		}
		if lr.module == "" {
			return fmt.Errorf("module %q needed by %q not in %q or built in: %w", d, name, r.src.where(), ErrModuleNotFound)
		}
		m.Depends = append(m.Depends, lr.module)
		if err := r.visit(lr.module); err != nil {
			return err
		}
	}
	m.SoftPost, err = r.soft(name, mi.SoftPost)
	if err != nil {
		return err
	}
	r.stack = r.stack[:len(r.stack)-1]
	r.state[name] = done
	r.out = append(r.out, m)
	// Post softdeps come after the module; they may depend on it.
	for _, d := range m.SoftPost {
		if err := r.visit(d); err != nil {
			return err
		}
	}
	return nil
}

// soft resolves softdep names (module names or aliases) to the module files
// of the tree, dropping built-in and absent ones.
func (r *resolver) soft(owner string, names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		lr, err := r.src.lookup(n)
		if err != nil {
			return nil, fmt.Errorf("resolving softdep %q of %q: %w", n, owner, err)
		}
		if lr.module != "" && lr.module != owner {
			out = appendUnique(out, lr.module)
		}
	}
	return out, nil
}
