package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/initos-runtime/initos-runtime/guestagent/procinit"
)

// ConfigName is the name of the bundle's configuration file.
const ConfigName = "config.json"

// Bundle is a loaded and validated OCI bundle.
type Bundle struct {
	// Dir is the absolute path of the bundle directory.
	Dir string
	// Spec is the parsed config.json. Load normalizes it: relative mount
	// destinations are made absolute.
	Spec *specs.Spec
	// Rootfs is the absolute path of root.path, resolved against Dir when
	// it is relative.
	Rootfs string
	// CacheKey, when set by the caller, names the rootfs's content for a
	// DiskCache: only for a rootfs that cannot change (a fresh snapshot of
	// read-only image layers).
	CacheKey string
}

// Load reads dir/config.json, validates it and checks that the root
// filesystem exists. Every problem it finds is reported as an error wrapping
// ErrInvalidBundle that names the bundle and the offending field.
func Load(dir string) (*Bundle, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: no bundle directory given", ErrInvalidBundle)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidBundle, dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, invalid(abs, "bundle directory does not exist: %w", err)
		}
		return nil, invalid(abs, "bundle directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, invalid(abs, "bundle path is not a directory (it is %s)", describeMode(fi.Mode()))
	}

	// "This REQUIRED file MUST reside in the root of the bundle directory
	// and MUST be named config.json." (bundle.md)
	cfgPath := filepath.Join(abs, ConfigName)
	cfi, err := os.Stat(cfgPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, invalid(abs, "no %s in the bundle directory (config.json MUST reside in the root of the bundle directory)", ConfigName)
		}
		return nil, invalid(abs, "%s: %w", ConfigName, err)
	}
	if !cfi.Mode().IsRegular() {
		return nil, invalid(abs, "%s is not a regular file (it is %s)", ConfigName, describeMode(cfi.Mode()))
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, invalid(abs, "reading %s: %w", ConfigName, err)
	}
	spec, err := parseSpec(data)
	if err != nil {
		return nil, invalid(abs, "%s: %w", ConfigName, err)
	}
	if err := validateSpec(spec); err != nil {
		return nil, invalid(abs, "%s: %w", ConfigName, err)
	}

	rootfs := filepath.Clean(spec.Root.Path)
	if !filepath.IsAbs(rootfs) {
		// "On POSIX platforms, path is either an absolute path or a
		// relative path to the bundle." (config.md, root)
		rootfs = filepath.Join(abs, rootfs)
	}
	rfi, err := os.Stat(rootfs)
	// "A directory MUST exist at the path declared by the field." (config.md, root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, invalid(abs, "root.path %q: rootfs %q does not exist (a directory MUST exist at the path declared by the field)", spec.Root.Path, rootfs)
	case err != nil:
		return nil, invalid(abs, "root.path %q: rootfs: %w", spec.Root.Path, err)
	case !rfi.IsDir():
		return nil, invalid(abs, "root.path %q: rootfs %q is not a directory (it is %s; a directory MUST exist at the path declared by the field)", spec.Root.Path, rootfs, describeMode(rfi.Mode()))
	}
	return &Bundle{Dir: abs, Spec: spec, Rootfs: rootfs}, nil
}

// invalid formats a bundle validation error; format may use %w.
func invalid(dir, format string, args ...any) error {
	return fmt.Errorf("%w %q: "+format, append([]any{ErrInvalidBundle, dir}, args...)...)
}

// parseSpec decodes config.json, reporting syntax and type errors with their
// line and column. Unknown properties are accepted: "Runtimes that are
// reading or processing this configuration file MUST NOT generate an error if
// they encounter an unknown property." (config.md)
func parseSpec(data []byte) (*specs.Spec, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("file is empty, not a JSON object")
	}
	var spec specs.Spec
	err := json.Unmarshal(data, &spec)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read, the offending one included.
		off := max(syn.Offset-1, 0)
		line, col := lineCol(data, off)
		return nil, fmt.Errorf("invalid JSON at line %d, column %d (byte offset %d): %w", line, col, off, err)
	case errors.As(err, &typ):
		// Offset is where the decoder stopped: just after the value.
		off := max(typ.Offset-1, 0)
		line, col := lineCol(data, off)
		return nil, fmt.Errorf("invalid JSON value ending at line %d, column %d (byte offset %d): %w", line, col, off, err)
	case err != nil:
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return &spec, nil
}

// lineCol turns a byte offset into a 1-based line and column.
func lineCol(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset < 0 {
		offset = 0
	}
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// semver is the SemVer 2.0.0 grammar (semver.org's suggested expression).
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// validateSpec checks the fields this runtime relies on. It normalizes
// relative mount destinations in place. A hostname without a UTS namespace
// is accepted: every container has its own VM, hence its own hostname.
func validateSpec(spec *specs.Spec) error {
	if err := validateVersion(spec.Version); err != nil {
		return err
	}

	// "On all other platforms, this field is REQUIRED." (config.md, root)
	if spec.Root == nil {
		return errors.New("root is missing (REQUIRED on Linux)")
	}
	if spec.Root.Path == "" {
		return errors.New("root.path is missing (REQUIRED)")
	}

	// The spec requires process only when start is called; this runtime
	// starts the VM at create and needs to know what to run in it.
	p := spec.Process
	if p == nil {
		return errors.New("process is missing (initos-runtime requires it at create)")
	}
	// "at least one entry is REQUIRED (non-Windows)" (config.md, process.args)
	if len(p.Args) == 0 {
		return errors.New("process.args is empty (at least one entry is REQUIRED)")
	}
	if p.Args[0] == "" {
		return errors.New("process.args[0] is empty: it names the program to execute")
	}
	// "cwd (string, REQUIRED) ... This value MUST be an absolute path." (config.md, process)
	if p.Cwd == "" {
		return errors.New("process.cwd is missing (REQUIRED; cwd MUST be an absolute path)")
	}
	if !path.IsAbs(p.Cwd) {
		return fmt.Errorf("process.cwd %q is not absolute (cwd MUST be an absolute path)", p.Cwd)
	}
	if err := validateRlimits(p.Rlimits); err != nil {
		return err
	}
	// "oomScoreAdj (int, OPTIONAL) adjusts the oom-killer score in
	// [pid]/oom_score_adj" (config.md, process): the kernel takes
	// OOM_SCORE_ADJ_MIN..OOM_SCORE_ADJ_MAX, and the runtime writes it for the
	// guest's process and the VM's host processes both.
	if a := p.OOMScoreAdj; a != nil && (*a < -1000 || *a > 1000) {
		return fmt.Errorf("process.oomScoreAdj %d is out of range (oom_score_adj takes -1000 to 1000)", *a)
	}

	if err := validateSysctls(spec); err != nil {
		return err
	}
	if err := validateNamespaces(spec.Linux); err != nil {
		return err
	}
	if err := validateDevices(spec.Linux); err != nil {
		return err
	}

	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if m.Destination == "" {
			return fmt.Errorf("mounts[%d]: destination is missing (REQUIRED)", i)
		}
		if !path.IsAbs(m.Destination) {
			// Linux: "it MAY be a relative path, in which case it MUST be
			// interpreted as relative to "/"." (config.md, mounts)
			m.Destination = path.Join("/", m.Destination)
		}
	}
	return nil
}

func validateVersion(v string) error {
	// "ociVersion (string, REQUIRED) MUST be in SemVer v2.0.0 format" (config.md)
	if v == "" {
		return errors.New("ociVersion is missing (REQUIRED)")
	}
	m := semver.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("ociVersion %q is not a SemVer 2.0.0 version (ociVersion MUST be in SemVer v2.0.0 format)", v)
	}
	major, err := strconv.ParseUint(m[1], 10, 64)
	// The spec "retains forward and backward compatibility within major
	// versions": any 1.x bundle is one this runtime can read.
	if err != nil || major != specs.VersionMajor {
		return fmt.Errorf("%w %q: major version %s is not supported (this runtime implements %d.x)", ErrUnsupportedVersion, v, m[1], specs.VersionMajor)
	}
	return nil
}

func validateRlimits(rl []specs.POSIXRlimit) error {
	seen := make(map[string]int, len(rl))
	for i, r := range rl {
		// "The runtime MUST generate an error for any values which cannot be
		// mapped to a relevant kernel interface." (config.md, process.rlimits)
		if _, ok := procinit.RlimitResources[r.Type]; !ok {
			return fmt.Errorf("process.rlimits[%d]: unknown type %q (must be one of getrlimit(2)'s RLIMIT_* resources)", i, r.Type)
		}
		// "If rlimits contains duplicated entries with same type, the
		// runtime MUST generate an error." (config.md, process.rlimits)
		if j, dup := seen[r.Type]; dup {
			return fmt.Errorf("process.rlimits[%d]: type %s duplicates process.rlimits[%d] (duplicated entries MUST be an error)", i, r.Type, j)
		}
		seen[r.Type] = i
		// setrlimit(2) fails with EINVAL when rlim_cur > rlim_max.
		if r.Soft > r.Hard {
			return fmt.Errorf("process.rlimits[%d]: %s soft limit %d exceeds hard limit %d", i, r.Type, r.Soft, r.Hard)
		}
	}
	return nil
}

// describeMode names a file type for error messages.
func describeMode(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symlink"
	case t&fs.ModeNamedPipe != 0:
		return "a fifo"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	default:
		return "an irregular file"
	}
}
