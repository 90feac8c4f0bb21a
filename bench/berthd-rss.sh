#!/usr/bin/env bash
# Idle resident memory of berthd, side by side in one run with an idle dockerd + containerd.
# Each daemon gets a private data root and socket, is started, answers once, then idles for
# IDLE seconds; the script reads VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup)
# of the daemon processes (berthd alone; dockerd plus the containerd it starts).
#
#   usage: sudo bench/berthd-rss.sh            (IDLE=5 by default)
# Needs: a release build (the script runs cargo); optional: Debian's docker.io.
set -euo pipefail
IDLE=${IDLE:-5}
cd "$(dirname "$0")/.."
REPO=$PWD
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$(mktemp -d /tmp/berthd-rss.XXXXXX)
berthd_pid=""
dockerd_pid=""
had_docker0=$(ip link show docker0 >/dev/null 2>&1 && echo yes || echo no)

cleanup() {
    set +e
    [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null
        umount -R "$WORK/docker" 2>/dev/null
        [ "$had_docker0" = yes ] || ip link del docker0 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/$3"; }
report() { # name pids...
    local name=$1 rss=0 pss=0
    shift
    for pid in "$@"; do
        rss=$((rss + $(kib "$pid" VmRSS status)))
        pss=$((pss + $(kib "$pid" Pss smaps_rollup)))
    done
    printf '%-28s RSS %6.1f MiB   PSS %6.1f MiB   (%s)\n' "$name" \
        "$(echo "$rss / 1024" | bc -l)" "$(echo "$pss / 1024" | bc -l)" "pids $*"
}
wait_for() { # seconds command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; return 1; }
        sleep 0.05
    done
}

echo "building berthd (release)..." >&2
cargo build -q --release -p berth-daemon -p berth-runtime -p berth-shim --bins
mkdir -p "$WORK/bin"
for b in berthd berth-runc berth-shim berth-init; do
    strip -o "$WORK/bin/$b" "$TARGET/release/$b"
done

"$WORK/bin/berthd" --data-root "$WORK/berth" -H "unix://$WORK/berth.sock" --log-level warn \
    2>"$WORK/berthd.log" &
berthd_pid=$!
wait_for 30 test -S "$WORK/berth.sock"
sleep "$IDLE"
report "berthd (idle)" "$berthd_pid"

if command -v dockerd >/dev/null; then
    dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" \
        --pidfile "$WORK/docker.pid" -H "unix://$WORK/docker.sock" --bridge=none --iptables=false \
        --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
    dockerd_pid=$!
    wait_for 60 docker -H "unix://$WORK/docker.sock" info
    sleep "$IDLE"
    containerd_pids=$(pgrep -P "$dockerd_pid" containerd || true)
    # shellcheck disable=SC2086
    report "dockerd + containerd (idle)" "$dockerd_pid" $containerd_pids
else
    echo "dockerd not installed: skipped (apt-get install docker.io)" >&2
fi
