#!/bin/bash
# berth vs docker-compose v1 (Debian's, with a private dockerd) on the same 10-service file
# (a depends_on chain, one network, busybox httpd), side by side in one hyperfine run each:
#   up -d until every container runs;  down;  scaling one service 10 → 50 (berth scale vs a
#   single-node `docker swarm` `docker service scale`, both waiting for convergence);
# and berthd's idle resident memory. Prints each figure and the ratio berth/incumbent.
#
#   sudo bench/compose.sh [RUNS] [DOWN_RUNS]     # defaults 5 and 2 (docker-compose down ≈ 100 s)
#
# dockerd gets its own data root, exec root, socket and no default bridge, and touches no
# firewall (--iptables=false); it is stopped and its traces removed on exit.
set -eu
runs=${1:-5}
down_runs=${2:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
for tool in hyperfine dockerd docker-compose docker; do
    command -v $tool >/dev/null || { echo "compose.sh: install $tool (apt-get install hyperfine docker.io docker-compose)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "compose.sh: run as root" >&2; exit 2; }

# BERTH_BIN_DIR: use release binaries built already instead of building them here
if [ -z "${BERTH_BIN_DIR:-}" ]; then
    (cd "$repo" && cargo build --quiet --release -p berth -p berth-daemon -p berth-runtime -p berth-shim -p berth-network --bins)
fi
bindir=${BERTH_BIN_DIR:-$target/release}
work=$(mktemp -d /tmp/berth-bench-compose.XXXXXX)
trap 'rm -rf "$work"' EXIT # replaced by the full cleanup once daemons run
mkdir -p "$work/bin" "$work/proj"
# berthd finds its helpers next to itself; berth-dns serves the networks' embedded DNS
for b in berth berthd berth-runc berth-shim berth-init berth-dns; do strip -o "$work/bin/$b" "$bindir/$b"; done

# the file: svc0 ← svc1 ← … ← svc9, one network, busybox httpd
{
    echo "services:"
    for i in $(seq 0 9); do
        echo "  svc$i:"
        echo "    image: busybox:latest"
        echo '    command: ["httpd", "-f", "-p", "80"]'
        echo "    networks: [net]"
        [ "$i" = 0 ] || printf '    depends_on: [svc%d]\n' $((i - 1))
    done
    echo "networks:"
    echo "  net: {}"
} >"$work/proj/compose.yaml"

ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)
bsock=$work/berth.sock
berth="$work/bin/berth --data-root $work/berth -H unix://$bsock --progress quiet -f $work/proj/compose.yaml -p bench"
dsock=$work/docker.sock
docker="docker -H unix://$dsock"
compose="env DOCKER_HOST=unix://$dsock docker-compose -f $work/proj/compose.yaml -p bench"
berthd_pid= dockerd_pid=
cleanup() {
    set +e
    $berth down -t 1 >/dev/null 2>&1
    [ -z "$berthd_pid" ] || { kill "$berthd_pid"; wait "$berthd_pid"; } 2>/dev/null
    if [ -n "$dockerd_pid" ]; then
        $docker service rm bench-scale >/dev/null 2>&1
        $compose down -t 1 >/dev/null 2>&1
        $docker swarm leave --force >/dev/null 2>&1
        kill "$dockerd_pid"; wait "$dockerd_pid" 2>/dev/null
        ip link del docker_gwbridge 2>/dev/null
    fi
    # whatever a failed `down` left: the containers' rootfs mounts (deepest first), the
    # data root's nft table and its networks' bridges (named in berth-network's state)
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null
    table=berth_$(printf '%s' "$work/berth" | sha256sum | cut -c1-8)
    nft delete table inet "$table" 2>/dev/null
    for br in $(grep -o '"br-[0-9a-f]*"' "$work/berth/network/networks.json" 2>/dev/null | tr -d '"'); do
        ip link del "$br" 2>/dev/null
    done
    echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
    rm -rf "$work"
}
trap cleanup EXIT

BERTH="$work/bin/berth" BERTH_DATA_ROOT="$work/berth" "$repo/examples/images/make-busybox.sh" >/dev/null
"$work/bin/berthd" --data-root "$work/berth" --host "unix://$bsock" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 200); do [ -S "$bsock" ] && break; sleep 0.05; done

dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
    -H "unix://$dsock" --iptables=false --ip-masq=false --bridge=none \
    --default-address-pool base=10.231.0.0/16,size=24 >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 200); do $docker info >/dev/null 2>&1 && break; sleep 0.1; done
rootfs=$(mktemp -d -p "$work")
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
tar -C "$rootfs" -c . | $docker import -c 'CMD ["sh"]' - busybox:latest >/dev/null

ratio() { # NAME INCUMBENT: medians and berth/incumbent from the hyperfine JSON
    python3 - "$work/$1.json" "$1" "$2" <<'PY'
import json, sys
path, name, other = sys.argv[1:]
r = {x["command"]: x for x in json.load(open(path))["results"]}
b, d = r["berth"], r[other]
print(f"{name:5s} median: berth {b['median']:.3f} s, {other} {d['median']:.3f} s, ratio {b['median']/d['median']:.3f}")
PY
}

cd "$work/proj"
echo "== up -d (all 10 running), from nothing each run"
hyperfine --runs "$runs" --export-json "$work/up.json" \
    -n berth --prepare "$berth down -t 1 >/dev/null 2>&1 || true" "$berth up -d" \
    -n docker-compose --prepare "$compose down -t 1 >/dev/null 2>&1 || true" "$compose up -d"
ratio up docker-compose
echo "== down (stop grace as the file says: the default 10 s)"
hyperfine --runs "$down_runs" --export-json "$work/down.json" \
    -n berth --prepare "$berth up -d >/dev/null 2>&1" "$berth down" \
    -n docker-compose --prepare "$compose up -d >/dev/null 2>&1" "$compose down"
ratio down docker-compose

echo "== scale one service 10 → 50 until converged"
$compose down -t 1 >/dev/null 2>&1 || true
$berth up -d
$docker swarm init --advertise-addr 127.0.0.1 >/dev/null
$docker service create -q --name bench-scale --replicas 10 busybox:latest httpd -f -p 80 >/dev/null
hyperfine --runs "$runs" --export-json "$work/scale.json" \
    -n berth --prepare "$berth scale svc9=10 >/dev/null" "$berth scale svc9=50 >/dev/null" \
    -n docker-swarm --prepare "$docker service scale bench-scale=10 >/dev/null" "$docker service scale bench-scale=50 >/dev/null"
ratio scale docker-swarm

sleep 5 # let berthd settle before reading its idle memory
rss=$(awk '/VmRSS/ {print $2}' "/proc/$berthd_pid/status")
dockerd_rss=$(awk '/VmRSS/ {print $2}' "/proc/$dockerd_pid/status")
containerd_rss=$(for p in $(pgrep -P "$dockerd_pid" containerd); do awk '/VmRSS/ {print $2}' "/proc/$p/status"; done | awk '{s+=$1} END {print s+0}')

echo "idle berthd RSS (after the runs, one app deployed): $((rss / 1024)) MiB; dockerd $((dockerd_rss / 1024)) MiB + containerd $((containerd_rss / 1024)) MiB"
