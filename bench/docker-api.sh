#!/usr/bin/env bash
# `docker run --rm busybox true` through berth's Docker API vs the same against Debian's
# dockerd, side by side in one hyperfine run, with the same docker CLI and the same busybox
# root filesystem imported into both (`docker import`). dockerd is private: its own
# --data-root, --exec-root, socket and bridge, --iptables=false; both servers are stopped and
# everything they made is removed on exit. Needs: hyperfine, docker.io, busybox-static, root.
#   sudo bench/docker-api.sh [RUNS]
#   PROFILE=debug sudo bench/docker-api.sh 3     # a quick check of the script itself
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-30}
target=${CARGO_TARGET_DIR:-$repo/target}
command -v hyperfine >/dev/null || { echo "install hyperfine" >&2; exit 2; }
command -v dockerd >/dev/null || { echo "install Debian's docker.io" >&2; exit 2; }

profile=${PROFILE:-release}
flag=--release
[ "$profile" = release ] || flag=
(cd "$repo" && cargo build --quiet $flag -p berth-docker-api -p berth-runtime -p berth-shim --bins)
work=$(mktemp -d /tmp/berth-bench-dapi.XXXXXX)
mkdir -p "$work/bin"
for b in berth-docker-api berth-runc berth-shim berth-init; do
    strip -o "$work/bin/$b" "$target/$profile/$b"
done

ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
had_docker0=$(ip link show docker0 >/dev/null 2>&1 && echo yes || echo no)
berth_sock=$work/berth.sock
docker_sock=$work/docker.sock
"$work/bin/berth-docker-api" --socket "$berth_sock" --data-root "$work/berth" >"$work/berth.log" 2>&1 &
berth_pid=$!
# dockerd's own bridge (not docker0), on a subnet of its own
bridge=dbench$$
ip link add "$bridge" type bridge
ip addr add 10.213.77.1/24 dev "$bridge"
ip link set "$bridge" up
dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
    --iptables=false --bridge="$bridge" -H "unix://$docker_sock" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
berth="docker -H unix://$berth_sock"
docker="docker -H unix://$docker_sock"
cleanup() {
    for d in "$berth" "$docker"; do
        $d ps -aq 2>/dev/null | xargs -r $d rm -f >/dev/null 2>&1 || true
    done
    kill "$berth_pid" "$dockerd_pid" 2>/dev/null || true
    wait "$berth_pid" "$dockerd_pid" 2>/dev/null || true
    umount -R "$work/docker" 2>/dev/null || true
    [ "$had_docker0" = yes ] || ip link del docker0 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
    # berth's default network of this data root: its bridge and nft table
    h=$(printf '%s' "$work/berth" | sha256sum | cut -c1-8)
    ip link del "br-$(printf 'berth-%s\0' "$h" | sha256sum | cut -c1-12)" 2>/dev/null || true
    nft delete table inet "berth_$h" 2>/dev/null || true
    echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
    $docker version >/dev/null 2>&1 && $berth version >/dev/null 2>&1 && break
    sleep 0.2
done
$docker version >/dev/null || { echo "dockerd did not start; see $work/dockerd.log" >&2; exit 1; }
$berth version >/dev/null || { echo "berth-docker-api did not start; see $work/berth.log" >&2; exit 1; }

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
for d in "$berth" "$docker"; do
    tar -C "$rootfs" -c . | $d import -c 'CMD ["sh"]' - busybox:latest >/dev/null
done
# the default bridge network on both, then with no network (namespace only)
hyperfine -N --warmup 3 --runs "$runs" ${EXPORT_JSON:+--export-json "$EXPORT_JSON"} \
    -n "berth: docker run --rm busybox true" "$berth run --rm busybox true" \
    -n "dockerd: docker run --rm busybox true" "$docker run --rm busybox true" \
    -n "berth: --network none" "$berth run --rm --network none busybox true" \
    -n "dockerd: --network none" "$docker run --rm --network none busybox true"
