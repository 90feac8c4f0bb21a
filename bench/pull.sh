#!/usr/bin/env bash
# Pull benchmark: `berth pull` vs `docker pull` of the same multi-layer image (>= 50 MB of
# random, incompressible data in several layers) from a local docker-registry on 127.0.0.1.
#
# Each run starts from an empty store (berth: a fresh --data-root; docker: `docker rmi` of the
# image), and only the pull itself is timed. Runs alternate berth, docker, berth, docker, …
# and the script prints each run, the medians and the ratio berth/docker pair by pair.
#
# Needs root and Debian's docker-registry and docker.io. It starts its own dockerd (own data
# root, socket and exec root; no bridge, no iptables) and its own registry on a free port, and
# removes both on exit. Usage: bench/pull.sh [RUNS]   (env: LAYERS, LAYER_MB, BERTH)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-7}
LAYERS=${LAYERS:-4}
LAYER_MB=${LAYER_MB:-16}
BERTH=${BERTH:-${CARGO_TARGET_DIR:-target}/release/berth}

if [[ ! -x $BERTH ]]; then
    echo "building berth (release)…" >&2
    cargo build --release -q -p berth
fi
for tool in /usr/bin/docker-registry /usr/sbin/dockerd docker python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/berth-bench-pull.XXXXXX)
EXEC_ROOT=$(mktemp -d /tmp/bbp-exec.XXXXXX) # short: dockerd puts sockets under it
REGISTRY_PID=
DOCKERD_PID=
cleanup() {
    set +e
    [[ -n $DOCKERD_PID ]] && kill "$DOCKERD_PID" && wait "$DOCKERD_PID" 2>/dev/null
    [[ -n $REGISTRY_PID ]] && kill "$REGISTRY_PID" && wait "$REGISTRY_PID" 2>/dev/null
    # dockerd leaves overlay mounts behind if it dies hard; unmount before removing.
    grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$WORK" "$EXEC_ROOT"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; exit 1; }
        sleep 0.1
    done
}

# --- the registry -------------------------------------------------------------------------
PORT=$(free_port)
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
  secret: bench
EOF
/usr/bin/docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
wait_for 20 python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/')"

# --- a private dockerd ----------------------------------------------------------------------
export DOCKER_HOST=unix://$WORK/docker.sock
dockerd --data-root "$WORK/docker" --exec-root "$EXEC_ROOT" --host "$DOCKER_HOST" \
    --pidfile "$WORK/docker.pid" --bridge none --iptables=false --ip-masq=false \
    >"$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
wait_for 60 docker info

# --- the image: LAYERS layers of LAYER_MB random MiB each, built and pushed by docker ----------
REF=127.0.0.1:$PORT/bench/big:v1
mkdir -p "$WORK/ctx"
{
    echo "FROM scratch"
    for i in $(seq 1 "$LAYERS"); do
        head -c $((LAYER_MB << 20)) /dev/urandom >"$WORK/ctx/layer$i.bin"
        echo "COPY layer$i.bin /data/layer$i.bin"
    done
} >"$WORK/ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$REF" "$WORK/ctx" >/dev/null
docker push -q "$REF" >/dev/null
docker rmi -f "$REF" >/dev/null
rm -rf "$WORK/ctx"
SIZE_MB=$(du -sm "$WORK/registry" | cut -f1)
echo "image $REF: $LAYERS layers, ${SIZE_MB} MB in the registry; berth $($BERTH version)"

now_ns() { date +%s%N; }
declare -a B_TIMES D_TIMES RATIOS
for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/berth-root"
    sync
    t0=$(now_ns)
    "$BERTH" --data-root "$WORK/berth-root" pull -q "$REF" >/dev/null
    t1=$(now_ns)
    docker rmi -f "$REF" >/dev/null 2>&1 || true
    sync
    t2=$(now_ns)
    docker pull -q "$REF" >/dev/null
    t3=$(now_ns)
    b=$(((t1 - t0) / 1000000))
    d=$(((t3 - t2) / 1000000))
    B_TIMES+=("$b")
    D_TIMES+=("$d")
    RATIOS+=("$(python3 -c "print(f'{$b/$d:.3f}')")")
    printf 'run %d: berth %5d ms   docker %5d ms   ratio %s\n' "$run" "$b" "$d" "${RATIOS[-1]}"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "median: berth $(median "${B_TIMES[@]}") ms, docker $(median "${D_TIMES[@]}") ms," \
    "ratio berth/docker $(median "${RATIOS[@]}") (pairwise median, $RUNS runs)"
