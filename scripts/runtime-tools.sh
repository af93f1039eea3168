#!/usr/bin/env bash
# Builds the OCI runtime-tools validation suite into BUILD_DIR:
#   BUILD_DIR/validation/NAME   one TAP-printing program per directory of the module's validation/
#   BUILD_DIR/runtimetest       static (CGO_ENABLED=0): the programs copy it into each test bundle
#   BUILD_DIR/rootfs-amd64.tar.gz  the module's test rootfs: the programs untar it from their working directory
# Run a program from BUILD_DIR:  cd BUILD_DIR && RUNTIME=/path/to/runtime ./validation/NAME
#   ./scripts/runtime-tools.sh BUILD_DIR
# `go install github.com/opencontainers/runtime-tools/...@latest` does not build here, so this uses
# a throwaway module that requires a pinned pseudo-version (override with RUNTIME_TOOLS_VERSION).
# Idempotent: a stamp naming the version and the programs makes a second run a no-op.
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
MODULE=github.com/opencontainers/runtime-tools
VERSION=${RUNTIME_TOOLS_VERSION:-v0.9.1-0.20251114084447-edf4cb3d2116}
mkdir -p "$1"; out=$(readlink -f "$1")
stamp=$out/.runtime-tools-version

if [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$VERSION" ]; then
	complete=1
	for f in runtimetest rootfs-amd64.tar.gz $(tail -n +2 "$stamp" | sed 's|^|validation/|'); do
		[ -s "$out/$f" ] || { complete=0; break; }
	done
	if [ "$complete" = 1 ]; then
		echo "runtime-tools $VERSION already built in $out"
		exit 0
	fi
fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init runtimetoolsbuild >/dev/null 2>&1
go mod edit -require="$MODULE@$VERSION"
src=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src/validation" ] || { echo "runtime-tools: no validation/ in $MODULE@$VERSION ($src)" >&2; exit 1; }

# The validation programs: every directory of validation/ holding a main package (util/ is the shared library).
names=()
for d in "$src"/validation/*/; do
	if grep -qs '^package main$' "$d"*.go; then
		names+=("$(basename "$d")")
	fi
done
[ ${#names[@]} -gt 0 ] || { echo "runtime-tools: no main packages under $src/validation" >&2; exit 1; }

# A tools file pins every package we build, so `go mod tidy` records all their dependencies' sums.
{
	printf '//go:build tools\n\npackage tools\n\nimport (\n'
	printf '\t_ "%s/cmd/runtimetest"\n' "$MODULE"
	for n in "${names[@]}"; do printf '\t_ "%s/validation/%s"\n' "$MODULE" "$n"; done
	printf ')\n'
} > tools.go
go mod tidy >/dev/null

export CGO_ENABLED=0
mkdir -p "$out/validation"
# Static, as the Makefile's STATIC_BUILD_FLAGS: it runs inside the container from the test rootfs.
go build -trimpath -tags 'netgo osusergo' -o "$out/runtimetest.new" "$MODULE/cmd/runtimetest"
mv "$out/runtimetest.new" "$out/runtimetest"
pkgs=(); for n in "${names[@]}"; do pkgs+=("$MODULE/validation/$n"); done
# With -o DIR/ and several main packages, go build writes each one as DIR/<last path element>.
go build -trimpath -o "$out/validation/" "${pkgs[@]}"
install -m 0644 "$src/rootfs-amd64.tar.gz" "$out/rootfs-amd64.tar.gz"
{ echo "$VERSION"; printf '%s\n' "${names[@]}"; } > "$stamp"
echo "runtime-tools $VERSION: runtimetest and ${#names[@]} validation programs in $out"
