#!/usr/bin/env bash
# Copied from shared/recipes/build-nerdctl.sh (the team's recipe; ../shared/recipes beside the repo), so that
# scripts/containerd-setup.sh does not depend on that folder being there. Keep the two in step.
# Builds nerdctl from the Go module proxy into $GOBIN (default: ./bin).
# `go install github.com/containerd/nerdctl/v2/cmd/nerdctl@latest` does not work here: the proxy refuses
# the version list, and nerdctl's go.mod needs its test-only module "tigron", which the proxy does not serve.
# So: a throwaway module that requires a pinned nerdctl and replaces tigron with a tiny interface stub.
set -euo pipefail
VERSION=${NERDCTL_VERSION:-v2.2.2}
GOBIN=${GOBIN:-$PWD/bin}; mkdir -p "$GOBIN"; GOBIN=$(readlink -f "$GOBIN")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tigron/tig"
cat > "$work/tigron/go.mod" <<'M'
module github.com/containerd/nerdctl/mod/tigron

go 1.23
M
cat > "$work/tigron/tig/tig.go" <<'G'
// Package tig stands in for nerdctl's test-only module; nerdctl's commands only need this interface.
package tig

type T interface {
	Helper()
	FailNow()
	Fail()
	Log(args ...any)
	Name() string
	TempDir() string
	Skip(args ...any)
}
G
cat > "$work/tools.go" <<'G'
//go:build tools

package tools

import _ "github.com/containerd/nerdctl/v2/cmd/nerdctl"
G
cd "$work"
go mod init nerdctlbuild >/dev/null 2>&1
go mod edit -replace github.com/containerd/nerdctl/mod/tigron=./tigron
go get "github.com/containerd/nerdctl/v2/cmd/nerdctl@$VERSION" >/dev/null 2>&1
GOBIN="$GOBIN" go install github.com/containerd/nerdctl/v2/cmd/nerdctl
"$GOBIN/nerdctl" --version
