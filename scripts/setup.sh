#!/usr/bin/env bash
# Installs everything initos-runtime needs on a fresh Debian 12 machine (as root),
# builds and installs it; with --demo, then runs a busybox image in a VM.
#   ./scripts/setup.sh [--demo]
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${INITOS_DATA_DIR:-/var/lib/initos-runtime}
PREFIX=${PREFIX:-/usr/local}

log() { printf 'setup: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (it installs packages)"; exit 1; }

export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { log "Go 1.26 is required (https://go.dev/dl) and was not found"; exit 1; }

# Debian packages: the VMM, mkfs.btrfs, busybox for the demo and tests, debootstrap for the
# Debian test image, runc to compare against, iproute2 for the tests' network namespaces,
# podman with conmon, netavark and iptables (podman run --runtime initos-runtime, -p), dnsmasq for
# the bridge's names, crun for make bench.
pkgs=(qemu-system-x86 btrfs-progs busybox-static debootstrap runc iproute2 ca-certificates podman conmon netavark iptables dnsmasq-base crun)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The guest kernel: Debian's generic linux-image-amd64 (it has btrfs, 9p, virtiofs, vsock and
# virtio modules), unpacked into $DATA_DIR/kernel without installing it on the host.
./scripts/fetch-kernel.sh "$DATA_DIR/kernel"

log "building"
make build >/dev/null
log "installing into $PREFIX"
install -D -m 0755 bin/initos-runtime "$PREFIX/bin/initos-runtime"
install -D -m 0755 bin/containerd-shim-initos-v2 "$PREFIX/bin/containerd-shim-initos-v2"
install -D -m 0755 bin/initos-agent "$PREFIX/libexec/initos-runtime/initos-agent"

initos-runtime check

if [ "${1:-}" = "--demo" ]; then
  ./scripts/demo.sh
fi
