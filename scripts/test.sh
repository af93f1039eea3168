#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (as root): installs what it needs
# (scripts/setup.sh), then lint, unit tests and the integration tests that boot real VMs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
./scripts/setup.sh
# The Debian minbase test image, built once with debootstrap from Debian's packages.
./scripts/minbase.sh /var/cache/initos-runtime/minbase-bookworm
# The same with systemd as its init, for the switch-root machines (/sbin/init is systemd).
./scripts/minbase.sh /var/cache/initos-runtime/systemd-bookworm systemd,systemd-sysv
# The OCI runtime-tools validation programs, built from the Go module proxy at a pinned version.
./scripts/runtime-tools.sh /var/cache/initos-runtime/runtime-tools
# containerd, ctr, containerd-shim-runc-v2, nerdctl and crictl at pinned versions (built from the Go
# module proxy, cached in /var/cache/initos-runtime/tools) and Debian's CNI plugins.
./scripts/containerd-setup.sh
make lint
make test
INITOS_MINBASE=/var/cache/initos-runtime/minbase-bookworm \
  INITOS_SYSTEMD_IMAGE=/var/cache/initos-runtime/systemd-bookworm \
  INITOS_RUNTIME_TOOLS=/var/cache/initos-runtime/runtime-tools make integration
# critest (cri-tools v1.37.0, built once into /var/cache/initos-runtime/tools): the CRI specs that pass
# under the initos handler (conformance/initos-pass.txt), under runc and then initos with VM templates
# (each pod's VM restored, as a Kubernetes node would run it; the integration tests boot CRI pods cold),
# printing initos's time as a multiple of runc's: about 7 minutes (docs/conformance.md).
./scripts/conformance.sh --ci --templates
