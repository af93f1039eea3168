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

# Debian packages, installed without their Recommends; each is something a test or feature runs:
#   qemu-system-x86             the VMM (qemu-system-x86_64); with qemu-system-common, whose
#                               /usr/lib/qemu/virtiofsd serves virtiofs shares
#   btrfs-progs                 mkfs.btrfs and btrfstune (disk images), btrfs (unit tests)
#   busybox-static              /bin/busybox: the demo's and the tests' root filesystem
#   debootstrap                 the Debian minbase test image (scripts/minbase.sh), with
#                               debian-archive-keyring (a Recommends) to verify the mirror
#   runc, crun                  runtimes to compare against (tests, make bench) and containerd's runc
#   iproute2                    ip: the tests' network namespaces
#   ca-certificates             Go's module downloads over HTTPS
#   podman, conmon              podman run --runtime initos-runtime (and podman build)
#   catatonit                   podman's pause image, every pod's infra container (a
#                               Recommends of podman)
#   netavark, aardvark-dns      podman's network backend and its by-name DNS (Recommends of
#                               containers-common and netavark: netavark runs
#                               /usr/lib/podman/aardvark-dns for podman networks)
#   iptables                    what netavark and the CNI plugins program -p and NAT with
#                               (podman only Suggests it)
#   containernetworking-plugins the CNI plugins in /usr/lib/cni (containerd's CRI and nerdctl)
#   dnsmasq-base                dnsmasq: names on the standalone bridge
#   make, git                   the Makefile (make build, make lint's git ls-files)
#   jq                          scripts/conformance.sh: its configs and critest's JSON report
#   zstd, xz-utils, lz4         the compressors the initrd unit tests make kernel-style inputs
#                               with, and TestKernels its compressed modules (the runtime decodes
#                               all of them in-process); dpkg-deb (dpkg, always there) unpacks
#                               the packages of initos-runtime kernel add
#   protobuf-compiler           protoc: make proto, and agentapi's test that the committed Go code
#                               is what agent.proto and monitor.proto generate
pkgs=(qemu-system-x86 qemu-system-common btrfs-progs busybox-static debootstrap debian-archive-keyring
  runc crun iproute2 ca-certificates podman conmon catatonit netavark aardvark-dns iptables
  containernetworking-plugins dnsmasq-base make git jq zstd xz-utils lz4 protobuf-compiler)
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
install -D -m 0755 bin/initos-exec "$PREFIX/libexec/initos-runtime/initos-exec"

# protoc's Go plugins, built from this module so that go.mod pins their versions (protobuf's and
# ttrpc's, the ones the generated code was made with).
log "installing protoc-gen-go and protoc-gen-go-ttrpc into $PREFIX/bin"
GOBIN="$PREFIX/bin" go install google.golang.org/protobuf/cmd/protoc-gen-go github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc

initos-runtime check

if [ "${1:-}" = "--demo" ]; then
  ./scripts/demo.sh
fi
