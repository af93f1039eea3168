#!/usr/bin/env bash
# Installs the containerd side of the integration tests (integration/containerd_*_test.go) on a
# Debian 12 machine (as root), into $PREFIX/bin (default /usr/local/bin):
#   containerd, ctr, containerd-shim-runc-v2  v2.4.2  (go install from the Go module proxy)
#   nerdctl                                   v2.2.2  (scripts/build-nerdctl.sh)
#   crictl                                    v1.37.0 (go install from the Go module proxy)
#   the CNI plugins in /usr/lib/cni           (Debian's containernetworking-plugins)
# Binaries are built into $TOOLS_CACHE (default /var/cache/initos-runtime/tools) and copied from
# there, so a re-run builds nothing. Idempotent: a tool already installed at its version is kept.
#   ./scripts/containerd-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONTAINERD_VERSION=v2.4.2
NERDCTL_VERSION=v2.2.2
CRICTL_VERSION=v1.37.0
PREFIX=${PREFIX:-/usr/local}
TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/initos-runtime/tools}

log() { printf 'containerd-setup: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root (it installs packages)"; exit 1; }
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { log "Go is required to build the tools and was not found"; exit 1; }

# has_version BIN VERSION: BIN exists and its version output names VERSION (with or without the
# leading v: `containerd --version` says "2.4.2+unknown", crictl "v1.37.0").
has_version() {
	local bin=$1 v=${2#v} flag=--version
	[ -x "$bin" ] || return 1
	case $(basename "$bin") in containerd-shim-*) flag=-v ;; esac
	# Read the whole output first: `cmd | grep -q` under pipefail fails when
	# grep exits at its match and cmd (a Go program) dies of SIGPIPE.
	local out
	out=$("$bin" "$flag" 2>&1) || return 1
	grep -qE "(^|[^0-9.])v?${v//./\\.}([^0-9.]|$)" <<<"$out"
}

# install_tool NAME VERSION BUILD...: $PREFIX/bin/NAME at VERSION, from the cache, which BUILD
# (a command run with GOBIN=$TOOLS_CACHE) fills when it lacks NAME at VERSION.
install_tool() {
	local name=$1 version=$2; shift 2
	local dst=$PREFIX/bin/$name src=$TOOLS_CACHE/$name
	if has_version "$dst" "$version"; then
		return 0
	fi
	if ! has_version "$src" "$version"; then
		log "building $name $version into $TOOLS_CACHE"
		GOBIN=$TOOLS_CACHE "$@" >&2
		has_version "$src" "$version" || { log "$src does not report version $version after its build"; exit 1; }
	fi
	log "installing $name $version into $PREFIX/bin"
	# Through a new file and a rename: a running containerd keeps its executable busy.
	install -D -m 0755 "$src" "$dst.new"
	mv -f "$dst.new" "$dst"
}

mkdir -p "$TOOLS_CACHE" "$PREFIX/bin"
# `go install pkg@version` builds outside any module: run it from a directory that has none.
gobuild() { (cd / && GOFLAGS=-buildvcs=false go install "$@"); }

# One build gives all three: several packages of one module at one version.
containerd_build() {
	gobuild "github.com/containerd/containerd/v2/cmd/"{containerd,ctr,containerd-shim-runc-v2}"@$CONTAINERD_VERSION"
}
for t in containerd ctr containerd-shim-runc-v2; do
	install_tool "$t" "$CONTAINERD_VERSION" containerd_build
done
install_tool nerdctl "$NERDCTL_VERSION" env NERDCTL_VERSION="$NERDCTL_VERSION" ./scripts/build-nerdctl.sh
# crictl reports the version the linker stamps into it ("unknown" otherwise).
install_tool crictl "$CRICTL_VERSION" gobuild -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
	"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"

# The CNI plugins (bridge, host-local, loopback, portmap, firewall, tuning) that containerd's CRI and
# nerdctl run, in /usr/lib/cni (the package depends on the iptables that portmap and firewall run).
if ! dpkg-query -W -f='${Status}' containernetworking-plugins 2>/dev/null | grep -q 'ok installed'; then
	log "installing containernetworking-plugins"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends containernetworking-plugins >/dev/null
fi
for p in bridge host-local loopback portmap firewall tuning; do
	[ -x "/usr/lib/cni/$p" ] || { log "CNI plugin /usr/lib/cni/$p missing after installing containernetworking-plugins"; exit 1; }
done
