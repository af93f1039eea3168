#!/usr/bin/env bash
# Unpacks the kernel that Debian's linux-image-amd64 depends on into DIR (default
# /var/lib/initos-runtime/kernel) with apt-get download + dpkg-deb -x: nothing is installed
# on the host. Kernels added to DIR before (initos-runtime kernel add) stay; does nothing
# when DIR already holds the current one.
set -euo pipefail
dir=${1:-/var/lib/initos-runtime/kernel}
log() { printf 'fetch-kernel: %s\n' "$*" >&2; }
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -q >/dev/null
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { log "cannot resolve the kernel package linux-image-amd64 depends on"; exit 1; }
release=${pkg#linux-image-}
if [ -f "$dir/boot/vmlinuz-$release" ] && [ -d "$dir/lib/modules/$release/kernel" ]; then
  exit 0
fi
log "fetching $pkg into $dir"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
chmod 0755 "$work" # apt's _apt user downloads into it
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
mkdir -p "$work/x" "$dir/boot" "$dir/lib/modules"
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/x"
# The modules first, the boot file last: a kernel counts once both are there.
rm -rf "$dir/lib/modules/$release"
cp -a "$work/x/lib/modules/$release" "$dir/lib/modules/$release"
for f in config System.map vmlinuz; do
  cp -a "$work/x/boot/$f-$release" "$dir/boot/.$f-$release.tmp"
  mv -f "$dir/boot/.$f-$release.tmp" "$dir/boot/$f-$release"
done
log "kernel $release ready"
