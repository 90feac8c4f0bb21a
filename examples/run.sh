#!/usr/bin/env bash
# Brings an example up with berth, shows it answering, and takes it down — offline, on a
# fresh machine (root; Rust toolchain; Debian's busybox-static). Everything lives in a
# temporary data root with its own daemon and socket, removed at the end.
#
#   sudo examples/run.sh [webapp|workers|two-networks|built-app]      # default: webapp
#   BERTH_BIN_DIR=target/debug sudo -E examples/run.sh      # use binaries built already
set -euo pipefail

example=${1:-webapp}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
dir=$here/$example
[[ -f $dir/compose.yaml ]] || { echo "run.sh: no example named $example (webapp, workers, two-networks, built-app)" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "run.sh: run as root (containers need it): sudo $0 $*" >&2; exit 2; }
[[ -x /bin/busybox ]] || { echo "run.sh: apt-get install busybox-static" >&2; exit 2; }

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [[ -n ${BERTH_BIN_DIR:-} ]]; then
    bin=$BERTH_BIN_DIR # binaries built already (berth, berthd, berth-runc, berth-shim, berth-init)
else
    say "building berth (cargo build --release --workspace --bins)"
    (cd "$repo" && cargo build --quiet --release --workspace --bins)
    bin=${CARGO_TARGET_DIR:-$repo/target}/release
fi

root=$(mktemp -d /tmp/berth-example.XXXXXX)
sock=$root/berth.sock
berth=("$bin/berth" --data-root "$root" -H "unix://$sock")
daemon=
cleanup() {
    say "down (containers, networks and volumes)"
    (cd "$dir" && "${berth[@]}" down -v) || true
    if [[ -n $daemon ]]; then
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    umount -R "$root" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT

say "busybox:latest from /bin/busybox (no registry)"
BERTH="$bin/berth" BERTH_DATA_ROOT="$root" "$here/images/make-busybox.sh" >/dev/null

say "berthd (data root $root)"
"$bin/berthd" --data-root "$root" --host "unix://$sock" >"$root/berthd.log" 2>&1 &
daemon=$!
for _ in $(seq 200); do [[ -S $sock ]] && break; sleep 0.05; done

cd "$dir"
say "berth up -d --wait"
"${berth[@]}" up -d --wait --wait-timeout 120
"${berth[@]}" ps

fetch() { # url: curl when installed, else busybox wget
    if command -v curl >/dev/null; then curl -fsS --max-time 5 "$1"; else timeout 5 busybox wget -q -O- "$1"; fi
}
case $example in
webapp)
    say "the web front answers on the published port"
    fetch "http://127.0.0.1:${WEB_PORT:-8080}/"
    say "inside the internal network, services find each other by name (berth exec api wget http://kv:6379/state)"
    "${berth[@]}" exec -T api wget -q -O- http://kv:6379/state
    ;;
workers)
    say "one name, three workers: \`worker\` resolves to every replica"
    "${berth[@]}" exec -T client nslookup worker
    say "the client asks the pool by that name (berth logs client)"
    sleep 2
    "${berth[@]}" logs --no-log-prefix --tail 3 client
    ;;
built-app)
    say "berth built the image (berth images) and its front answers on the published port"
    "${berth[@]}" images
    fetch "http://127.0.0.1:${BUILT_PORT:-8082}/"
    ;;
two-networks)
    say "the front answers on the published port"
    fetch "http://127.0.0.1:${FRONT_PORT:-8081}/"
    say "on the private network the API reaches the store by name"
    "${berth[@]}" exec -T api wget -q -O- http://store:6379/
    say "only the front is exposed: berth port front 8080, berth port store 6379"
    "${berth[@]}" port front 8080
    "${berth[@]}" port store 6379 2>&1 || true
    ;;
esac
