#!/usr/bin/env bash
# Resident memory of the per-container shim, side by side in one run:
#   berth-shim (release, as cargo builds it, and static-pie)  vs  conmon  vs
#   containerd-shim-runc-v2 (under a private containerd started just for this run).
# Each starts N busybox containers running `sleep 3600` through Debian's runc; the script
# then reads VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup: shared pages divided
# among the processes sharing them) of every shim process and prints the medians.
#
#   usage: sudo bench/shim-memory.sh            (N=20 by default; N=50 bench/shim-memory.sh)
# Needs: runc, busybox-static; optional: conmon, containerd (skipped when not installed).
set -euo pipefail
N=${N:-20}
cd "$(dirname "$0")/.."
REPO=$PWD
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$(mktemp -d /tmp/berth-shim-bench.XXXXXX)

cleanup() {
    set +e
    for dir in "$WORK"/berth-*/state/*; do
        [ -S "$dir/shim.sock" ] && "$SHIMCTL" "$dir" delete --force >/dev/null 2>&1
    done
    for root in "$WORK"/*/runc; do
        [ -d "$root" ] || continue
        for id in $("$RUNC" --root "$root" list -q 2>/dev/null); do
            "$RUNC" --root "$root" delete --force "$id" >/dev/null 2>&1
        done
    done
    if [ -f "$WORK/containerd/containerd.pid" ]; then
        local ctr_addr="$WORK/containerd/containerd.sock"
        for id in $(ctr --address "$ctr_addr" task ls -q 2>/dev/null); do
            ctr --address "$ctr_addr" task kill -s SIGKILL "$id" >/dev/null 2>&1
        done
        for id in $(ctr --address "$ctr_addr" containers ls -q 2>/dev/null); do
            for _ in $(seq 50); do
                ctr --address "$ctr_addr" task rm "$id" >/dev/null 2>&1 && break
                sleep 0.1
            done
            ctr --address "$ctr_addr" containers rm "$id" >/dev/null 2>&1
        done
        kill "$(cat "$WORK/containerd/containerd.pid")" 2>/dev/null
        sleep 0.5
        umount -R "$WORK/containerd/state" 2>/dev/null
    fi
    for f in "$WORK"/conmon/*/conmon.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building berth-shim (release, and static-pie)..." >&2
cargo build -q --release -p berth-shim --bins --example shimctl
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$TARGET/static" \
    cargo build -q --release -p berth-shim --bins --target x86_64-unknown-linux-gnu
SHIM_DYN=$TARGET/release/berth-shim
SHIM_STATIC=$TARGET/static/x86_64-unknown-linux-gnu/release/berth-shim
SHIMCTL=$TARGET/release/examples/shimctl

# One busybox bundle shared by every container (its root is read-only).
B=$WORK/bundle
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys" "$B/rootfs/tmp"
cp /bin/busybox "$B/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$B/rootfs/bin/$a"; done
"$RUNC" spec --bundle "$B"
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/sleep", "3600"/' "$B/config.json"
grep -q '"/bin/sleep"' "$B/config.json" || { echo "could not edit config.json" >&2; exit 1; }

# median of numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
report() { # name, pids...
    local name=$1; shift
    local r p
    r=$(for pid in "$@"; do rss "$pid"; done | median)
    p=$(for pid in "$@"; do pss "$pid"; done | median)
    printf '| %s | %d | %d KiB (%s MiB) | %d KiB |\n' "$name" "$#" "$r" \
        "$(awk -v k="$r" 'BEGIN {printf "%.2f", k/1024}')" "$p"
}

echo "| shim | processes | median VmRSS | median Pss |"
echo "|---|---|---|---|"

run_berth() { # label, binary
    local label=$1 bin=$2 dir=$WORK/berth-$1 pids=()
    mkdir -p "$dir/state"
    for i in $(seq "$N"); do
        # The readiness line comes once the container is created; $(...) waits for it.
        ready=$("$bin" --id "bench-$label-$i" --bundle "$B" --state-dir "$dir/state/$i" \
            --runtime "$RUNC" --runtime-root "$dir/runc")
        case $ready in *'"error"'*) echo "berth-shim: $ready" >&2; exit 1 ;; esac
        "$SHIMCTL" "$dir/state/$i" start
        pids+=("$(cat "$dir/state/$i/shim.pid")")
    done
    for i in $(seq "$N"); do
        "$SHIMCTL" "$dir/state/$i" state | grep -q '"status":"running"'
    done
    report "berth-shim ($label)" "${pids[@]}"
    for i in $(seq "$N"); do "$SHIMCTL" "$dir/state/$i" delete --force; done
}
run_berth dynamic "$SHIM_DYN"
run_berth static "$SHIM_STATIC"

if command -v conmon >/dev/null; then
    pids=()
    for i in $(seq "$N"); do
        d=$WORK/conmon/$i
        mkdir -p "$d/exit" "$d/sock"
        conmon --api-version 1 -c "bench-conmon-$i" -u "bench-conmon-$i" -n "bench-conmon-$i" \
            -r "$RUNC" -b "$B" -p "$d/pid" -P "$d/conmon.pid" -l "k8s-file:$d/log" \
            --exit-dir "$d/exit" --socket-dir-path "$d/sock" --log-level error \
            --runtime-arg --root --runtime-arg "$WORK/conmon/runc"
        for _ in $(seq 100); do [ -s "$d/pid" ] && break; sleep 0.05; done
        "$RUNC" --root "$WORK/conmon/runc" start "bench-conmon-$i"
        pids+=("$(cat "$d/conmon.pid")")
    done
    report "conmon $(conmon --version | awk 'NR==1 {print $3}')" "${pids[@]}"
else
    echo "| conmon | not installed | | |"
fi

if command -v containerd >/dev/null && command -v containerd-shim-runc-v2 >/dev/null; then
    d=$WORK/containerd
    mkdir -p "$d"
    cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
    containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
    echo $! >"$d/containerd.pid"
    for _ in $(seq 100); do [ -S "$d/containerd.sock" ] && break; sleep 0.1; done
    for i in $(seq "$N"); do
        ctr --address "$d/containerd.sock" run -d --rootfs "$B/rootfs" \
            "bench-ctr-$i" /bin/sleep 3600 >/dev/null
    done
    mapfile -t pids < <(pgrep -f "containerd-shim-runc-v2 .*-address $d/containerd.sock")
    report "containerd-shim-runc-v2 $(containerd --version | awk '{print $3}')" "${pids[@]}"
else
    echo "| containerd-shim-runc-v2 | not installed | | |"
fi
echo
echo "N=$N containers per shim; runc $("$RUNC" --version | awk 'NR==1 {print $3}'); $(uname -r)"
