#!/usr/bin/env bash
# Builds a Debian bookworm minbase root filesystem in DIR with debootstrap (cached: a
# complete DIR is kept), with PACKAGES (comma-separated) besides minbase's.
# Usage: minbase.sh DIR [PACKAGES]
set -euo pipefail
dir=$1
include=${2:+--include=$2}
[ -f "$dir.complete" ] && [ -d "$dir" ] && exit 0
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "minbase: no Debian mirror found in the apt sources" >&2; exit 1; }
rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
debootstrap --variant=minbase $include bookworm "$dir.tmp" "$mirror" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
rm -rf "$dir" && mv "$dir.tmp" "$dir"
touch "$dir.complete"
