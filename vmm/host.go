package vmm

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Accelerator names.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Accel is the acceleration a VM gets on this host and why.
type Accel struct {
	Name   string // AccelKVM or AccelTCG
	Reason string
}

// Host paths DetectAccel looks at.
const (
	devKVM         = "/dev/kvm"
	sysModKVMIntel = "/sys/module/kvm_intel"
	sysModKVMAMD   = "/sys/module/kvm_amd"
	sysModKVMPVM   = "/sys/module/kvm_pvm"
)

// AccelProbes are the host checks DetectAccelWith makes; tests fake them.
type AccelProbes struct {
	// Exists reports whether path exists.
	Exists func(path string) bool
	// Open opens path read-write and closes it again.
	Open func(path string) error
}

// HostProbes probes the real host.
func HostProbes() AccelProbes {
	return AccelProbes{
		Exists: func(path string) bool {
			_, err := os.Stat(path)
			return err == nil
		},
		Open: func(path string) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			return f.Close()
		},
	}
}

// DetectAccel decides between KVM and TCG for a stock guest kernel.
func DetectAccel() Accel { return DetectAccelWith(HostProbes()) }

// DetectAccelWith is DetectAccel with injected probes. KVM is used only
// when /dev/kvm opens and kvm_intel or kvm_amd is loaded: a /dev/kvm served
// by kvm_pvm alone runs only PVM-enabled guests, a stock kernel spins there
// without output (design §8).
func DetectAccelWith(p AccelProbes) Accel {
	if !p.Exists(devKVM) {
		return Accel{AccelTCG, devKVM + " does not exist; using TCG"}
	}
	if err := p.Open(devKVM); err != nil {
		return Accel{AccelTCG, fmt.Sprintf("opening %s: %v; using TCG", devKVM, err)}
	}
	switch {
	case p.Exists(sysModKVMIntel):
		return Accel{AccelKVM, devKVM + " opens and kvm_intel is loaded"}
	case p.Exists(sysModKVMAMD):
		return Accel{AccelKVM, devKVM + " opens and kvm_amd is loaded"}
	case p.Exists(sysModKVMPVM):
		return Accel{AccelTCG, "no usable KVM for a stock kernel: /dev/kvm is PVM (kvm_pvm), stock kernels hang under it; using TCG"}
	}
	return Accel{AccelTCG, devKVM + " opens but neither kvm_intel nor kvm_amd is loaded; using TCG"}
}

// DefaultTSCKHz is what TSCKHz returns when the host tells nothing.
const DefaultTSCKHz = 2400000

// TSCKHz is the host TSC frequency in kHz for the guest's tsc_early_khz=:
// without it about half of the microvm boots under TCG hang in TSC
// calibration (design §8).
func TSCKHz() int { return tscKHz(os.ReadFile) }

// tscKHz prefers sysfs's exact tsc_freq_khz, then /proc/cpuinfo's
// "cpu MHz", then DefaultTSCKHz.
func tscKHz(read func(string) ([]byte, error)) int {
	if b, err := read("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if k, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && k > 0 {
			return k
		}
	}
	if b, err := read("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			key, val, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(key) != "cpu MHz" {
				continue
			}
			mhz, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err == nil && mhz > 0 && mhz < 1e6 {
				return int(math.Round(mhz * 1000))
			}
			break
		}
	}
	return DefaultTSCKHz
}
