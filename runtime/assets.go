package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/initos-runtime/initos-runtime/initrd"
	"github.com/initos-runtime/initos-runtime/kernels"
	"github.com/initos-runtime/initos-runtime/vmm"
)

// agentSearchPath lists where the guest agent is looked for after
// Config.AgentPath: next to the running executable, then libexec.
func agentSearchPath() []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "initos-agent"))
	}
	return append(dirs,
		"/usr/local/libexec/initos-runtime/initos-agent",
		"/usr/libexec/initos-runtime/initos-agent",
	)
}

// findAgent returns the guest agent binary to put into the initrd, once it
// has found the process helper next to it (findHelper).
func findAgent(c Config) (string, error) {
	if c.AgentPath != "" {
		if _, err := os.Stat(c.AgentPath); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNoAgent, err)
		}
		_, err := findHelper(c.AgentPath)
		return c.AgentPath, err
	}
	candidates := agentSearchPath()
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			// An agent without its helper is a broken install: said as
			// such, not passed over for an older one further on.
			_, err := findHelper(p)
			return p, err
		}
	}
	return "", fmt.Errorf("%w: looked in %q (build it with `make build`, or set agentPath)", ErrNoAgent, candidates)
}

// findHelper returns the process helper that goes into the initrd with
// agent: initos-exec in the agent's directory (make build and setup.sh put
// them side by side).
func findHelper(agent string) (string, error) {
	p := helperOf(agent)
	st, err := os.Stat(p)
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%q is not a regular file", p)
	}
	if err != nil {
		return "", fmt.Errorf("%w: the process helper %s belongs next to the agent %q: %v (build both with `make build`)", ErrNoAgent, initrd.HelperName, agent, err)
	}
	return p, nil
}

// helperOf is where agent's process helper is: initos-exec beside it.
func helperOf(agent string) string { return filepath.Join(filepath.Dir(agent), initrd.HelperName) }

// Assets are the host files every VM of this host boots from.
type Assets struct {
	Kernel  *initrd.Kernel
	Vmlinux string
	Agent   string
	Helper  string // the process helper, next to the agent
}

// KernelAnnotation names the kernel release a container's VM boots
// (initos-runtime kernel list); without it the store's default.
const KernelAnnotation = "org.initos.kernel"

// FindAssets locates the default kernel (extracting its vmlinux once) and
// the agent.
func FindAssets(c Config) (*Assets, error) {
	k, err := kernels.Open(c.KernelRoot).Find("")
	if err != nil {
		return nil, noKernel(err)
	}
	return assetsOf(c, k)
}

// noKernel is ErrNoKernel with the store's reason and how to get a kernel.
func noKernel(err error) error {
	return fmt.Errorf("%w: %w (run scripts/setup.sh to fetch Debian's linux-image-amd64, or initos-runtime kernel add)", ErrNoKernel, err)
}

// bootAssets are the host files a VM boots from.
type bootAssets struct {
	vmlinux, initrd string
	// modules is the kernel's modules directory, shared read-only with the
	// guest for the modules its kernel asks for (vmm.Config.Modules).
	modules string
}

// holdAssets holds the kernel of release ("" the default) for a VM (the
// store refuses to remove it until unhold) and returns its vmlinux, the
// initrd of it and the agent, and its modules directory.
func holdAssets(c Config, release string) (_ bootAssets, unhold func(), err error) {
	k, unhold, err := kernels.Open(c.KernelRoot).Hold(release)
	if err != nil {
		// A kernel the container names that is not there is its own
		// error; no kernel at all is the host's.
		if !errors.Is(err, kernels.ErrNotAdded) && !errors.Is(err, kernels.ErrBadRelease) && !errors.Is(err, kernels.ErrBeingRemoved) {
			err = noKernel(err)
		}
		return bootAssets{}, nil, err
	}
	defer func() {
		if err != nil {
			unhold()
		}
	}()
	a, err := assetsOf(c, k)
	if err != nil {
		return bootAssets{}, nil, err
	}
	initrdPath, err := a.Initrd(c)
	if err != nil {
		return bootAssets{}, nil, err
	}
	return bootAssets{vmlinux: a.Vmlinux, initrd: initrdPath, modules: k.ModulesDir}, unhold, nil
}

// assetsOf extracts kernel k's vmlinux (once) and finds the agent and its
// process helper.
func assetsOf(c Config, k *initrd.Kernel) (*Assets, error) {
	vmlinux, err := initrd.Vmlinux(k, c.CacheDir())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	agent, err := findAgent(c)
	if err != nil {
		return nil, err
	}
	// findAgent found the helper beside the agent.
	return &Assets{Kernel: k, Vmlinux: vmlinux, Agent: agent, Helper: helperOf(agent)}, nil
}

// Initrd returns the cached initrd: one per kernel, agent and helper, holding every
// module group; each VM's kernel command line (initos.load=) picks the
// groups its devices need.
func (a *Assets) Initrd(c Config) (string, error) {
	p, err := initrd.Build(initrd.Options{Kernel: a.Kernel, AgentPath: a.Agent, HelperPath: a.Helper, CacheDir: c.CacheDir()})
	if err != nil {
		return "", fmt.Errorf("building initrd: %w", err)
	}
	return p, nil
}

// Prepare finds the kernel and the agent and builds the initrd that a VM of
// the driver chosen for this host boots from, so that the first container
// does not pay for it. Safe to run concurrently with containers starting:
// the caches are written atomically.
func Prepare(c Config) (driver, initrdPath string, err error) {
	driver, err = chooseDriver(c, vmm.DetectAccel())
	if err != nil {
		return "", "", err
	}
	a, err := FindAssets(c)
	if err != nil {
		return "", "", err
	}
	initrdPath, err = a.Initrd(c)
	return driver, initrdPath, err
}
