#!/usr/bin/env bash
# Resident memory of the per-container shim, side by side in one run:
#   berth-shim (release, as cargo builds it, and static-pie)  vs  conmon  vs
#   containerd-shim-runc-v2 (under a private containerd started just for this run).
# Each starts N busybox containers through Debian's runc; the script then reads VmRSS
# (/proc/PID/status) and Pss (/proc/PID/smaps_rollup: shared pages divided among the
# processes sharing them) of every shim process and prints the medians.
# Round 1: idle containers (`sleep 3600`). Round 2: every container first writes LOG_MB MiB
# (half stdout in 56-byte lines, half stderr in 2-byte lines), and the shims are measured
# once all of it is in their logs — berth-shim and conmon only, since `ctr run -d` gives
# containerd's shim no log to write.
#
#   usage: sudo bench/shim-memory.sh        (N=20 LOG_MB=5 by default; N=50 bench/shim-memory.sh)
# Needs: runc, busybox-static; optional: conmon, containerd (skipped when not installed).
set -euo pipefail
N=${N:-20}
LOG_MB=${LOG_MB:-5}
cd "$(dirname "$0")/.."
REPO=$PWD
RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$(mktemp -d /tmp/berth-shim-bench.XXXXXX)
SHIMCTL=$TARGET/release/examples/shimctl

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
    for f in "$WORK"/conmon-*/*/conmon.pid; do
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

# A busybox bundle shared by all containers of a round (its root is read-only).
make_bundle() { # dir, process.args as the inside of a JSON list
    local b=$1
    mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/dev" "$b/rootfs/sys" "$b/rootfs/tmp"
    cp /bin/busybox "$b/rootfs/bin/"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$b/rootfs/bin/$a"
    done
    "$RUNC" spec --bundle "$b"
    # runc spec writes `"terminal": true` and the args as one line holding "sh".
    ARGS=$2 awk '/^[ \t]*"sh"$/ { print ENVIRON["ARGS"]; next }
                 { sub(/"terminal": true/, "\"terminal\": false"); print }' \
        "$b/config.json" >"$b/config.edited"
    mv "$b/config.edited" "$b/config.json"
    grep -q '"terminal": false' "$b/config.json" || { echo "cannot edit $b/config.json" >&2; exit 1; }
}
IDLE=$WORK/idle
CHATTY=$WORK/chatty
out_bytes=$((LOG_MB * 1024 * 1024))
err_bytes=$((out_bytes / 10))
make_bundle "$IDLE" '"/bin/sleep", "3600"'
make_bundle "$CHATTY" "\"/bin/sh\", \"-c\", \"yes 'a line of output about as long as a line in a log file' | head -c $out_bytes; yes err | head -c $err_bytes >&2; echo done; exec sleep 3600\""

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
wait_logged() { # log file, pattern of the container's last stdout line ("…done")
    for _ in $(seq 3000); do
        grep -q "$2" "$1" 2>/dev/null && return
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    exit 1
}

run_berth() { # label, binary, bundle
    local label=$1 bin=$2 bundle=$3
    local dir=$WORK/berth-$label-${bundle##*/} pids=() ready
    mkdir -p "$dir/state"
    for i in $(seq "$N"); do
        # The readiness line comes once the container is created; $(...) waits for it.
        ready=$("$bin" --id "bench-$label-${bundle##*/}-$i" --bundle "$bundle" \
            --state-dir "$dir/state/$i" --runtime "$RUNC" --runtime-root "$dir/runc")
        case $ready in *'"error"'*) echo "berth-shim: $ready" >&2; exit 1 ;; esac
        "$SHIMCTL" "$dir/state/$i" start
        pids+=("$(cat "$dir/state/$i/shim.pid")")
    done
    for i in $(seq "$N"); do
        "$SHIMCTL" "$dir/state/$i" state | grep -q '"status":"running"'
        if [ "$bundle" = "$CHATTY" ]; then wait_logged "$dir/state/$i/container.log" 'done\\n"'; fi
    done
    report "berth-shim ($label)" "${pids[@]}"
    for i in $(seq "$N"); do "$SHIMCTL" "$dir/state/$i" delete --force; done
}

run_conmon() { # bundle
    local bundle=$1 base=$WORK/conmon-${1##*/} pids=() d id
    for i in $(seq "$N"); do
        d=$base/$i
        id=bench-conmon-${bundle##*/}-$i
        mkdir -p "$d/exit" "$d/sock"
        conmon --api-version 1 -c "$id" -u "$id" -n "$id" \
            -r "$RUNC" -b "$bundle" -p "$d/pid" -P "$d/conmon.pid" -l "k8s-file:$d/log" \
            --exit-dir "$d/exit" --socket-dir-path "$d/sock" --log-level error \
            --runtime-arg --root --runtime-arg "$base/runc"
        for _ in $(seq 100); do [ -s "$d/pid" ] && break; sleep 0.05; done
        "$RUNC" --root "$base/runc" start "$id"
        pids+=("$(cat "$d/conmon.pid")")
    done
    if [ "$bundle" = "$CHATTY" ]; then
        for i in $(seq "$N"); do wait_logged "$base/$i/log" 'done$'; done
    fi
    report "conmon $(conmon --version | awk 'NR==1 {print $3}')" "${pids[@]}"
    for i in $(seq "$N"); do
        "$RUNC" --root "$base/runc" delete --force "bench-conmon-${bundle##*/}-$i"
    done
}

run_containerd() {
    local d=$WORK/containerd pids
    mkdir -p "$d"
    cat >"$d/config.toml" <<TOML
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
TOML
    containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
    echo $! >"$d/containerd.pid"
    for _ in $(seq 100); do [ -S "$d/containerd.sock" ] && break; sleep 0.1; done
    for i in $(seq "$N"); do
        ctr --address "$d/containerd.sock" run -d --rootfs "$IDLE/rootfs" \
            "bench-ctr-$i" /bin/sleep 3600 >/dev/null
    done
    mapfile -t pids < <(pgrep -f "containerd-shim-runc-v2 .*-address $d/containerd.sock")
    report "containerd-shim-runc-v2 $(containerd --version | awk '{print $3}')" "${pids[@]}"
}

have_conmon=$(command -v conmon || true)
have_containerd=""
if command -v containerd >/dev/null && command -v containerd-shim-runc-v2 >/dev/null; then
    have_containerd=yes
fi

echo "Idle containers:"
echo
echo "| shim | processes | median VmRSS | median Pss |"
echo "|---|---|---|---|"
run_berth dynamic "$SHIM_DYN" "$IDLE"
run_berth static "$SHIM_STATIC" "$IDLE"
if [ -n "$have_conmon" ]; then run_conmon "$IDLE"; else echo "| conmon | not installed | | |"; fi
if [ -n "$have_containerd" ]; then
    run_containerd
else
    echo "| containerd-shim-runc-v2 | not installed | | |"
fi
echo
echo "After each container wrote $LOG_MB MiB to stdout and $((err_bytes / 1024)) KiB to stderr:"
echo
echo "| shim | processes | median VmRSS | median Pss |"
echo "|---|---|---|---|"
run_berth dynamic "$SHIM_DYN" "$CHATTY"
run_berth static "$SHIM_STATIC" "$CHATTY"
if [ -n "$have_conmon" ]; then run_conmon "$CHATTY"; fi
echo
echo "N=$N containers per shim; runc $("$RUNC" --version | awk 'NR==1 {print $3}'); $(uname -r)"
