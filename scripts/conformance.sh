#!/usr/bin/env bash
# critest (cri-tools v1.37.0, the CRI validation suite) against a private containerd with CRI and
# two runtime handlers: runc (containerd's default) and initos (this checkout's shim, one VM per pod).
# Prints per handler: passed, failed, skipped and the time taken, and with both handlers initos's time
# as a multiple of runc's (docs/conformance.md has a run).
#   ./scripts/conformance.sh            both handlers, every spec but those that need a registry;
#                                       exits 1 if a spec of conformance/initos-pass.txt fails
#   ./scripts/conformance.sh --ci       only the specs of conformance/initos-pass.txt, under runc then
#                                       initos (the time beside runc's); exits 1 unless every one of
#                                       them ran and passed under initos (--handler initos: initos only)
#   ./scripts/conformance.sh --handler runc   one handler (runc or initos), every spec
#   ./scripts/conformance.sh --handler initos --focus REGEXP   only the specs matching REGEXP
#                                       (ginkgo's --focus); the pass list is not checked
#   --templates (with any of the above)  the initos handler restores each pod's VM from a template
#                                       (config "templates": true) instead of booting it
# As root, after scripts/containerd-setup.sh (containerd, ctr, crictl) and scripts/fetch-kernel.sh.
# critest is built into $TOOLS_CACHE (default /var/cache/initos-runtime/tools) once. The images the
# specs run are stand-ins built here from Debian's busybox (conformance/standins): no registry is
# reached, and the registries the specs name are pointed at a closed port on loopback.
# Reports and logs go to $CONFORMANCE_OUT (default /tmp/initos-conformance). Everything started
# (containerd, shims, VMs, network namespaces, mounts, the bridge) is removed on exit, also on ^C.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CRITEST_VERSION=v1.37.0
TOOLS_CACHE=${TOOLS_CACHE:-/var/cache/initos-runtime/tools}
OUT=${CONFORMANCE_OUT:-/tmp/initos-conformance}
KERNEL_ROOT=${INITOS_KERNEL_ROOT:-/var/lib/initos-runtime/kernel}
PASS_LIST=$repo/conformance/initos-pass.txt
# Specs that pull images from a registry every time (PullImage is not skipped for a present image):
# the image service's specs, the same under every handler, which need the real images (by digest).
# The Image Volume specs run: a registry on loopback serves their stand-ins (below).
SKIP='\[k8s\.io\] Image (Manager|Consistency|Identifier Consistency)'

log() { printf 'conformance: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

mode=full
user_focus=
handlers=(runc initos)
templates=false
while [ $# -gt 0 ]; do
	case $1 in
	--ci) mode=ci ;;
	--handler) [ $# -ge 2 ] || die "--handler needs runc or initos"; handlers=("$2"); shift ;;
	--templates) templates=true ;;
	--focus) [ $# -ge 2 ] || die "--focus needs a regular expression"; mode=focus; user_focus=$2; shift ;;
	*) die "unknown argument $1 (see the head of $0)" ;;
	esac
	shift
done
for h in "${handlers[@]}"; do
	case $h in runc | initos) ;; *) die "unknown handler $h (runc or initos)" ;; esac
done

[ "$(id -u)" = 0 ] || die "must run as root (containerd, CNI, VMs)"
export PATH=$PATH:/usr/local/go/bin
# need NAME FROM [PATH]: NAME is executable (at PATH, or in $PATH), else fail naming what installs it.
need() {
	local path=${3:-$1}
	if [[ $path == /* ]]; then [ -x "$path" ]; else command -v "$path" >/dev/null; fi ||
		die "$1 not found: $2"
}
need go "Go (scripts/setup.sh installs it)"
for t in containerd ctr containerd-shim-runc-v2 crictl; do need "$t" "scripts/containerd-setup.sh builds it"; done
need runc "Debian package runc"
need ip "Debian package iproute2"
need ss "Debian package iproute2"
need iptables "Debian package iptables" /usr/sbin/iptables
need jq "Debian package jq"
need ipcmk "Debian package util-linux"
need busybox "Debian package busybox-static" /bin/busybox
need qemu-system-x86_64 "Debian package qemu-system-x86"
need mkfs.btrfs "Debian package btrfs-progs"
for p in bridge host-local loopback portmap; do
	need "$p" "Debian package containernetworking-plugins" "/usr/lib/cni/$p"
done
[ -d "$KERNEL_ROOT/boot" ] || die "no guest kernel in $KERNEL_ROOT (scripts/fetch-kernel.sh)"

# critest is a test binary (go install refuses it): built with go test -c from the module's source.
critest=$TOOLS_CACHE/critest
# The whole output first: grep -q exiting at its match would kill critest with SIGPIPE (pipefail).
version=$("$critest" --version 2>/dev/null) || true
if ! grep -q "^critest version: $CRITEST_VERSION\$" <<<"$version"; then
	log "building critest $CRITEST_VERSION into $TOOLS_CACHE"
	mkdir -p "$TOOLS_CACHE"
	src=$(cd / && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/cri-tools@$CRITEST_VERSION" | jq -r .Dir)
	[ -d "$src" ] || die "go mod download of sigs.k8s.io/cri-tools@$CRITEST_VERSION gave no source"
	(cd "$src" && GOFLAGS=-buildvcs=false go test -c -o "$critest.new" \
		-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRITEST_VERSION" ./cmd/critest)
	mv -f "$critest.new" "$critest"
fi

# Debian's docker-registry (distribution 2.8) serves the Image Volume specs' images on loopback: its
# binary is taken from the package into $TOOLS_CACHE, not installed (the package starts a system
# service on port 5000).
registry=$TOOLS_CACHE/docker-registry
if [ ! -x "$registry" ]; then
	log "fetching docker-registry (Debian package) into $TOOLS_CACHE"
	mkdir -p "$TOOLS_CACHE"
	deb=$(mktemp -d)
	(cd "$deb" && { apt-get download -q docker-registry >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get download -q docker-registry >/dev/null; }; }) ||
		die "apt-get download docker-registry failed"
	dpkg-deb -x "$deb"/docker-registry_*.deb "$deb/x"
	install -m 0755 "$deb/x/usr/bin/docker-registry" "$registry.new" && mv -f "$registry.new" "$registry"
	rm -rf "$deb"
fi

log "building the runtime (make build)"
make -s build >&2

mkdir -p "$OUT"
work=$(mktemp -d /tmp/icnf-XXXXXX) # short: socket paths live under it
sock=$work/c.sock
cpid=
rpid=
bridge=

# cleanup removes everything this script started, in order: the pods (their VMs and network
# namespaces, through CRI), containerd, any process still naming the work directory (shims, VMMs),
# shim sockets, mounts, the bridge, the directory.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
		crictl --runtime-endpoint "unix://$sock" --timeout 4m rmp --all --force >/dev/null 2>&1
		kill -TERM "$cpid"
		for _ in $(seq 300); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$cpid" 2>/dev/null
	fi
	[ -n "$rpid" ] && kill -TERM "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
	local p left cmdline
	for _ in $(seq 50); do
		left=
		for p in /proc/[0-9]*; do
			[ "${p#/proc/}" = $$ ] && continue
			cmdline=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")
			[[ $cmdline == *"$work"* ]] && left+=" ${p#/proc/}"
		done
		[ -z "$left" ] && break
		sleep 0.2
	done
	if [ -n "$left" ]; then
		log "killing processes left of the private containerd:$left"
		kill -KILL $left 2>/dev/null
	fi
	if [ -f "$work/containerd.log" ]; then
		cp "$work/containerd.log" "$OUT/containerd.log"
		for p in $(grep -o 'msg="connecting to shim [^"]*" address="unix://[^"]*"' "$work/containerd.log" | sed 's/.*unix:\/\///; s/"$//' | sort -u); do
			rm -f "$p"
		done
	fi
	awk -v w="$work" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m"; done
	[ -n "$bridge" ] && ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge"
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A bridge and /24 that no interface has: icnfN on 10.215.N.0/24.
for n in $(seq 0 250); do
	if ! ip link show "icnf$n" >/dev/null 2>&1 && ! ip -4 addr | grep -q " 10\.215\.$n\."; then
		bridge=icnf$n subnet=10.215.$n.0/24
		break
	fi
done
[ -n "$bridge" ] || die "no free bridge icnfN (stale ones? ip link show type bridge)"

mkdir -p "$work"/{root,state,tmp,cni,ipam,r,data,runc,certs.d}
pause=localhost/initos-pause:latest
# The registries the specs name answer from a closed port on loopback: a pull fails at once and no
# traffic leaves the machine.
for r in registry.k8s.io gcr.io k8s.gcr.io docker.io _default; do
	mkdir -p "$work/certs.d/$r"
	printf 'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n' >"$work/certs.d/$r/hosts.toml"
done
jq -n --arg root "$work/r" --arg data "$work/data" --arg kernel "$KERNEL_ROOT" --arg agent "$repo/bin/initos-agent" \
	--argjson templates "$templates" \
	'{root: $root, dataDir: $data, kernelRoot: $kernel, agentPath: $agent, vmm: "qemu", bootTimeout: "3m", templates: $templates}' >"$work/initos.json"
# As the integration tests' private containerd (integration/containerd_config_test.go), with one CNI
# network and the registries above.
cat >"$work/config.toml" <<EOF
version = 3
root = "$work/root"
state = "$work/state"
temp = "$work/tmp"
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$work/t.sock"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".registry]
  config_path = "$work/certs.d"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "$pause"

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "$work/cni"
  max_conf_num = 1

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  Root = "$work/runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.initos]
  runtime_type = "io.containerd.initos.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.initos.options]
  ConfigPath = "$work/initos.json"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
jq -n --arg br "$bridge" --arg subnet "$subnet" --arg ipam "$work/ipam" '{
  cniVersion: "1.0.0", name: "initos-conformance",
  plugins: [
    {type: "bridge", bridge: $br, isGateway: true, ipMasq: false, hairpinMode: true,
     ipam: {type: "host-local", ranges: [[{subnet: $subnet}]], routes: [{dst: "0.0.0.0/0"}], dataDir: $ipam}},
    {type: "portmap", capabilities: {portMappings: true}}
  ]}' >"$work/cni/10-initos-conformance.conflist"

log "starting containerd in $work"
# Its own session: a ^C reaches critest, not containerd, which cleanup stops. The built shim comes
# first in its PATH (containerd runs containerd-shim-initos-v2 from there).
PATH=$repo/bin:$PATH INITOS_CONFIG=$work/initos.json setsid containerd --config "$work/config.toml" --log-level info \
	>"$work/containerd.log" 2>&1 </dev/null &
cpid=$!
for _ in $(seq 600); do
	kill -0 "$cpid" 2>/dev/null || { tail -n 30 "$work/containerd.log" >&2; die "containerd exited during startup"; }
	[ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1 && break
	sleep 0.1
done
ctr --address "$sock" version >/dev/null || die "containerd did not answer on $sock within 60 s"
plugins=$(ctr --address "$sock" plugins ls)
for id in 'io.containerd.grpc.v1\s+cri' 'io.containerd.cri.v1\s+runtime' 'io.containerd.cri.v1\s+images'; do
	grep -qE "^$id\s+\S+\s+ok\s*$" <<<"$plugins" || { tail -n 30 "$work/containerd.log" >&2; die "containerd's plugin $id is not ok"; }
done

log "importing the stand-in images"
./scripts/busybox-bundle.sh "$work/busybox" true
# Hard links, as in busybox's images, not symbolic links to busybox: a spec masks /bin/ls.
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -f "$work/busybox/rootfs/bin/busybox" "$work/busybox/rootfs/bin/$a"
done
CGO_ENABLED=0 go build -o "$work/nnp" ./conformance/nnp
go run ./conformance/standins -rootfs "$work/busybox/rootfs" -nnp "$work/nnp" -out "$work/images.tar"
ctr --address "$sock" --namespace k8s.io images import "$work/images.tar" >/dev/null

# The registry: on a free loopback port, its storage under $work; gcr.io's mirror from now on (the
# Image Volume specs pull gcr.io/k8s-staging-cri-tools/... each time). Its command line names $work,
# so cleanup stops it.
for port in $(seq 15800 15899); do
	ss -Htln "sport = :$port" | grep -q . || break
done
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
	"$work/registry" "$port" >"$work/registry.yml"
setsid "$registry" serve "$work/registry.yml" >"$work/registry.log" 2>&1 </dev/null &
rpid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$work/registry.log" >&2; die "docker-registry did not listen on 127.0.0.1:$port"; }
c="ctr --address $sock --namespace k8s.io"
$c images tag registry.k8s.io/e2e-test-images/busybox:1.29-2 gcr.io/k8s-staging-cri-tools/test-image-tag:test >/dev/null
for img in test-image-tag:test test-image-predefined-group:latest; do
	$c images push --plain-http "127.0.0.1:$port/k8s-staging-cri-tools/$img" "gcr.io/k8s-staging-cri-tools/$img" >/dev/null
done
printf 'server = "http://127.0.0.1:%s"\n\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$port" "$port" \
	>"$work/certs.d/gcr.io/hosts.toml"

# The CI mode's focus: the listed spec names, regexp characters escaped (not anchored: ginkgo
# matches against a longer text than the name).
focus=${user_focus:-}
if [ "$mode" = ci ]; then
	[ -s "$PASS_LIST" ] || die "$PASS_LIST is empty or missing"
	focus="($(grep -v '^#' "$PASS_LIST" | grep . | sed 's/[][\.*^$()+?{}|]/\\&/g' | paste -sd'|'))"
fi

# run HANDLER: one critest run; its JSON report in $OUT/HANDLER.json, its output in $OUT/HANDLER.log.
declare -A summary took secs
failed_listed=0
run() {
	local h=$1 t0 rc=0
	local args=(--runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --runtime-handler "$h"
		--ginkgo.no-color --ginkgo.skip "$SKIP" --ginkgo.json-report "$OUT/$h.json")
	[ -n "$focus" ] && args+=(--ginkgo.focus "$focus")
	log "critest under $h (output: $OUT/$h.log)"
	t0=$(date +%s)
	# critest reads crictl.yaml from its working directory: none there.
	(cd "$work" && "$critest" "${args[@]}") >"$OUT/$h.log" 2>&1 || rc=$?
	secs[$h]=$(($(date +%s) - t0))
	[ -s "$OUT/$h.json" ] || { tail -n 30 "$OUT/$h.log" >&2; die "critest under $h wrote no report (exit $rc)"; }
	local specs='.[0].SpecReports[] | select(.LeafNodeType == "It")'
	local name='(.ContainerHierarchyTexts | join(" ")) + " " + .LeafNodeText'
	jq -r "$specs | .State + \"\t\" + $name" "$OUT/$h.json" | sort -k2 >"$OUT/$h.results"
	local passed failed skipped
	passed=$(grep -c '^passed' "$OUT/$h.results" || true)
	skipped=$(grep -c '^skipped' "$OUT/$h.results" || true)
	failed=$(grep -vc '^\(passed\|skipped\|pending\)' "$OUT/$h.results" || true)
	summary[$h]="$passed passed, $failed failed, $skipped skipped"
	took[$h]="$((secs[$h] / 60))m$((secs[$h] % 60))s"
	if [ "$h" = initos ] && [ "$mode" != focus ] && [ -s "$PASS_LIST" ]; then
		# Each listed spec must have run and passed.
		local missing
		missing=$(grep -v '^#' "$PASS_LIST" | grep . | sort | comm -23 - <(grep '^passed' "$OUT/$h.results" | cut -f2- | sort))
		if [ -n "$missing" ]; then
			failed_listed=$(grep -c . <<<"$missing")
			log "specs of conformance/initos-pass.txt that did not pass under initos:"
			sed 's/^/  /' <<<"$missing" >&2
		fi
	fi
	grep -v '^passed\|^skipped' "$OUT/$h.results" | sed "s/^/  $h: /" >&2 || true
}

for h in "${handlers[@]}"; do
	run "$h"
done
# The counts alone on their line (the form CI reads as a test runner's closing line).
initos_label=initos
[ "$templates" = true ] && initos_label="initos (VM templates)"
for h in "${handlers[@]}"; do
	label=$h
	[ "$h" = initos ] && label=$initos_label
	echo "critest under $label took ${took[$h]}"
	echo "$h: ${summary[$h]}"
done
# Issue 16's bound: the specs under initos in at most 3x runc's time, on the same machine and specs.
if [ -n "${secs[runc]:-}" ] && [ -n "${secs[initos]:-}" ] && [ "${secs[runc]}" -gt 0 ]; then
	echo "critest: $initos_label took $(awk -v a="${secs[initos]}" -v b="${secs[runc]}" 'BEGIN { printf "%.2f", a / b }')x runc's time on the same specs"
fi
if [ "$failed_listed" -gt 0 ]; then
	echo "conformance: $failed_listed of the specs that pass under initos (conformance/initos-pass.txt) did not"
	exit 1
fi
