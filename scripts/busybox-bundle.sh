#!/usr/bin/env bash
# Makes an OCI bundle in DIR whose rootfs is Debian's static busybox, running `sh -c CMD`.
#   ./scripts/busybox-bundle.sh DIR CMD
set -euo pipefail
dir=$1; cmd=$2
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-bundle: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc" "$dir/rootfs/tmp" "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev" "$dir/rootfs/root"
cp "$bb" "$dir/rootfs/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$dir/rootfs/etc/group"
chmod 1777 "$dir/rootfs/tmp"
esc=$(printf '%s' "$cmd" | sed 's/\\/\\\\/g; s/"/\\"/g')
cat > "$dir/config.json" <<J
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh", "-c", "$esc"],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/"
  },
  "root": {"path": "rootfs"},
  "hostname": "initos",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}
}
J
