package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	cshim "github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/initos-runtime/initos-runtime/runtime"
)

// ConfigEnv names a config file for shims started without runtime options
// (ctr and nerdctl pass none); the CLI reads the same variable.
const ConfigEnv = "INITOS_CONFIG"

// resolveConfig is the runtime config of a container: the file named by
// the runtime options' ConfigPath (the CRI's
// [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.initos.options]
// ConfigPath = "..."), else $INITOS_CONFIG, else the default file when it
// exists; then ConfigBody, a JSON object, overrides single fields (e.g.
// {"vmm": "qemu", "memoryMiB": 1024, "cpus": 2}).
func resolveConfig(o *runtimeoptions.Options) (runtime.Config, error) {
	path, optional := runtime.DefaultConfigFile, true
	if p := os.Getenv(ConfigEnv); p != "" {
		path, optional = p, false
	}
	if o != nil && o.ConfigPath != "" {
		path, optional = o.ConfigPath, false
	}
	c, err := runtime.LoadConfigFile(path, optional)
	if err != nil {
		return c, err
	}
	if o != nil && len(o.ConfigBody) > 0 {
		if err := json.Unmarshal(o.ConfigBody, &c); err != nil {
			return c, fmt.Errorf("runtime options: parsing ConfigBody as a JSON config: %w", err)
		}
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("runtime options: %w", err)
	}
	return c, nil
}

// readOptionsFrom reads the options containerd passes to `shim -info`.
func readOptionsFrom(r io.Reader) (*runtimeoptions.Options, error) {
	o, err := cshim.ReadRuntimeOptions[*runtimeoptions.Options](r)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("reading runtime options: %w (initos takes runtimeoptions.v1.Options: ConfigPath, ConfigBody)", err)
	}
	return o, nil
}

// optionsOf decodes a task's runtime options (nil: none).
func optionsOf(a *anypb.Any) (*runtimeoptions.Options, error) {
	if a == nil || a.GetTypeUrl() == "" {
		return nil, nil
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, fmt.Errorf("decoding runtime options %q: %w", a.GetTypeUrl(), err)
	}
	o, ok := v.(*runtimeoptions.Options)
	if !ok {
		return nil, fmt.Errorf("%w: runtime options of type %T: initos takes runtimeoptions.v1.Options (ConfigPath, ConfigBody)", errdefs.ErrInvalidArgument, v)
	}
	return o, nil
}
