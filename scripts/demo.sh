#!/usr/bin/env bash
# The main job: a real image (busybox) running in a VM through initos-runtime run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
./scripts/busybox-bundle.sh "$work/bundle" 'echo "hello from $(uname -r) in a VM: $(cat /proc/cpuinfo | grep -m1 "model name")"; uname -a; exit 7'
set +e
initos-runtime run --timings --bundle "$work/bundle" "demo-$$"
rc=$?
set -e
echo "exit status: $rc (expected 7)"
[ "$rc" = 7 ]
