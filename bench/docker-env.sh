# Sourced by bench/run.sh and bench/run-100.sh: a private dockerd (own data root, exec root,
# socket) with busybox imported from the same root filesystem berth uses, and a berth data
# root with the same image. Defines $berth, $docker, and stop_docker (called on exit).
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/berth-bench-run.XXXXXX)
target=${CARGO_TARGET_DIR:-$repo/target}

command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 2; }
command -v dockerd >/dev/null || { echo "install Debian's docker.io" >&2; exit 2; }

(cd "$repo" && cargo build --quiet --release -p berth -p berth-runtime -p berth-shim --bins)
mkdir -p "$work/bin"
for b in berth berth-runc berth-shim berth-init; do
    strip -o "$work/bin/$b" "$target/release/$b"
done
berth="$work/bin/berth --data-root $work/berth"
BERTH="$work/bin/berth" BERTH_DATA_ROOT="$work/berth" "$repo/examples/images/make-busybox.sh" >/dev/null

ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
had_docker0=$(ip link show docker0 >/dev/null 2>&1 && echo yes || echo no)
sock=$work/docker.sock
dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
    -H "unix://$sock" --iptables=false --ip-masq=false >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
docker="docker -H unix://$sock"
stop_docker() {
    $docker ps -aq 2>/dev/null | xargs -r $docker rm -f >/dev/null 2>&1 || true
    for id in $($berth container ps -aq 2>/dev/null); do $berth container rm -f "$id" >/dev/null 2>&1 || true; done
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    umount -R "$work/docker" 2>/dev/null || true
    # leave the host's links as found: dockerd leaves docker0 behind
    [ "$had_docker0" = yes ] || ip link del docker0 2>/dev/null || true
    # and berth's default network of this data root (names as docs/containers.md says)
    h=$(printf '%s' "$work/berth" | sha256sum | cut -c1-8)
    ip link del "br-$(printf 'berth-%s\0' "$h" | sha256sum | cut -c1-12)" 2>/dev/null || true
    nft delete table inet "berth_$h" 2>/dev/null || true
    echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
    rm -rf "$work"
}
trap stop_docker EXIT
for _ in $(seq 100); do $docker info >/dev/null 2>&1 && break; sleep 0.2; done
$docker info >/dev/null || { echo "dockerd did not start; see $work/dockerd.log" >&2; exit 1; }
# the same root filesystem for docker: export berth's image and import it
rootfs=$(mktemp -d)
/bin/busybox --list >/dev/null
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
tar -C "$rootfs" -c . | $docker import -c 'CMD ["sh"]' - busybox:latest >/dev/null
rm -rf "$rootfs"
