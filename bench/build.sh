#!/usr/bin/env bash
# Image builds, berth vs Debian's docker.io (classic builder, DOCKER_BUILDKIT=0), on the same
# 10-step Dockerfile and the same busybox base image:
#   1. a rebuild where every step is cached;
#   2. a rebuild after changing one file that the 6th step copies.
#
#   bash bench/build.sh [RUNS]        # default 20 runs per command
#
# Needs root, hyperfine, docker.io (dockerd) and busybox-static. Starts a private dockerd
# (own --data-root, --exec-root, socket and bridge, --iptables=false) and stops it at the
# end; berth uses a private data root. Both run RUN steps on the host network
# (`docker build --network host`, berth's default), so neither pays for a veth per step.
set -euo pipefail

runs=${1:-20}
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
work=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
bridge=bbuild$$
command -v hyperfine >/dev/null || { echo "install hyperfine" >&2; exit 2; }
command -v dockerd >/dev/null || { echo "install Debian's docker.io" >&2; exit 2; }

# BERTH_BENCH_PROFILE=dev measures a debug build (quicker to make; slower to run).
profile=${BERTH_BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
    (cd "$repo" && cargo build --quiet --release -p berth -p berth-runtime --bins)
    dir=$target/release
else
    (cd "$repo" && cargo build --quiet -p berth -p berth-runtime --bins)
    dir=$target/debug
fi
mkdir -p "$work/bin"
for b in berth berth-runc; do cp "$dir/$b" "$work/bin/$b"; done
berth="$work/bin/berth --data-root $work/berth"
BERTH="$work/bin/berth" BERTH_DATA_ROOT="$work/berth" "$repo/examples/images/make-busybox.sh" >/dev/null

ip link add "$bridge" type bridge
ip addr add 10.213.77.1/24 dev "$bridge"
ip link set "$bridge" up
sock=$work/docker.sock
dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" --pidfile "$work/docker.pid" \
    -H "unix://$sock" --bridge "$bridge" --iptables=false --ip-masq=false --ip-forward=false \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
docker="docker -H unix://$sock"
cleanup() {
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    umount -R "$work/docker" 2>/dev/null || true
    # dockerd leaves its default network namespace mounted in the exec root
    umount "$work/docker-exec/netns/default" 2>/dev/null || true
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do $docker info >/dev/null 2>&1 && break; sleep 0.2; done
$docker info >/dev/null || { echo "dockerd did not start; see $work/dockerd.log" >&2; exit 1; }
# The very same base image for docker.
$berth image save --format docker -o "$work/busybox.tar" busybox:latest
$docker load -i "$work/busybox.tar" >/dev/null

ctx=$work/ctx
mkdir -p "$ctx/src"
for i in $(seq -w 1 100); do head -c 4096 /dev/urandom | base64 >"$ctx/src/file-$i.txt"; done
echo "mode=bench" >"$ctx/config.txt"
cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox:latest
ENV APP=/app
WORKDIR /app
COPY config.txt ./
RUN mkdir -p data && cp config.txt data/
COPY src/ ./src/
RUN find src -type f | sort > manifest.txt
RUN sed 's/^/- /' manifest.txt > listing.txt
LABEL bench=build
CMD ["cat", "listing.txt"]
EOF

export DOCKER_BUILDKIT=0
bb="$berth image build -q -t bench:1 $ctx"
db="$docker build -q --network host -t bench:1 $ctx"
# Warm both caches.
$bb >/dev/null
$db >/dev/null

echo "== full-cache rebuild (10 steps, all cached)"
hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$work/cached.md" \
    -n berth "$bb" -n "docker build (classic)" "$db"
cat "$work/cached.md"

echo "== rebuild after changing one file copied by step 6"
change="sh -c 'head -c 64 /dev/urandom | base64 > $ctx/src/file-050.txt'"
hyperfine --warmup 1 --runs "$runs" --export-markdown "$work/changed.md" \
    --prepare "$change" -n berth "$bb" -n "docker build (classic)" "$db"
cat "$work/changed.md"
