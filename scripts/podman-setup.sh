#!/usr/bin/env bash
# Installs Debian's podman and conmon for the podman integration tests
# (integration/podman_test.go) on a Debian 12 machine (as root). Idempotent.
#   ./scripts/podman-setup.sh             install only
#   ./scripts/podman-setup.sh --env DIR   also set up DIR as the tests do, to drive podman by hand:
#                                         an isolated store, initos-runtime registered as "initos",
#                                         the busybox image as localhost/initos-busybox:latest
# With --env, INITOS_RUNTIME (default: initos-runtime on PATH) and INITOS_CONFIG (optional)
# choose the runtime binary and its config; the script prints the variables to export.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'podman-setup: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (it installs packages)"; exit 1; }

# podman 4.3 with conmon; netavark is the network backend the tests configure, aardvark-dns its
# by-name DNS on podman networks (/usr/lib/podman/aardvark-dns) and iptables what it sets up -p and
# NAT with (neither is a dependency: aardvark-dns is netavark's Recommends, iptables podman's Suggests).
pkgs=(podman conmon netavark aardvark-dns iptables busybox-static tar)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "${1:-}" = "--env" ] || exit 0
dir=${2:?usage: $0 --env DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rt=${INITOS_RUNTIME:-$(command -v initos-runtime || true)}
[ -x "$rt" ] || { log "no initos-runtime: set INITOS_RUNTIME to the binary (make build gives bin/initos-runtime)"; exit 1; }
rt=$(cd "$(dirname "$rt")" && pwd)/$(basename "$rt")

# podman runs the runtime with runc's flags and almost none of its environment:
# a wrapper carries the config.
{
  echo '#!/bin/sh'
  if [ -n "${INITOS_CONFIG:-}" ]; then
    printf "INITOS_CONFIG='%s'\nexport INITOS_CONFIG\n" "$(cd "$(dirname "$INITOS_CONFIG")" && pwd)/$(basename "$INITOS_CONFIG")"
  fi
  printf "exec '%s' \"\$@\"\n" "$rt"
} > "$dir/initos"
chmod 0755 "$dir/initos"

# default_ulimits: podman's defaults (nofile 1048576) exceed the hard limits of our hosts.
cat > "$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$dir/tmp"
lock_type = "file"
volume_path = "$dir/volumes"
runtime = "initos"

[engine.runtimes]
initos = ["$dir/initos"]

[network]
network_backend = "netavark"
network_config_dir = "$dir/networks"
EOF
cat > "$dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$dir/graph"
runroot = "$dir/run"
EOF
export CONTAINERS_CONF=$dir/containers.conf CONTAINERS_STORAGE_CONF=$dir/storage.conf

if ! podman image exists localhost/initos-busybox:latest; then
  bundle=$(mktemp -d)
  trap 'rm -rf "$bundle"' EXIT
  ./scripts/busybox-bundle.sh "$bundle" true
  tar -C "$bundle/rootfs" -cf "$bundle/busybox.tar" .
  podman import --quiet "$bundle/busybox.tar" localhost/initos-busybox:latest >/dev/null
fi
log "ready; containers run as VMs with:"
cat <<EOF
export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF
podman run --rm --network none localhost/initos-busybox echo hello
EOF
