#!/bin/bash
# Deploying 100 replicas across a 3-manager berth cluster until all run, beside
# `docker service create --replicas 100` on a single-node swarm until converged, side by side
# in one hyperfine run. Each berth node is a real berthd in its own network namespace on a
# bridge this script makes (traffic stays on it), busybox imported into each; dockerd is
# private (own data root, exec root and socket, --iptables=false, no default bridge).
# Everything is removed on exit.
#
#   bench/cluster-deploy.sh [RUNS] [REPLICAS]   (root; needs hyperfine and Debian's docker.io;
#                                                builds nothing: BIN=target/release by default)
set -euo pipefail
RUNS=${1:-3}
REPLICAS=${2:-100}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/target/release}
[ -x "$BIN/berthd" ] || { echo "no $BIN/berthd: cargo build --release --workspace first (or set BIN)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "install hyperfine" >&2; exit 2; }
command -v dockerd >/dev/null || { echo "install Debian's docker.io" >&2; exit 2; }
WORK=$(mktemp -d /tmp/berth-deploy-XXXXXX)
. "$(dirname "$0")/cluster-nodes.sh"
DOCKERD=""
cleanup() {
  set +e
  for i in 0 1 2; do
    timeout 60 "$BIN/berth" -H "unix://$WORK/n$i.sock" -p bench down >/dev/null 2>&1
  done
  remove_nodes
  for f in "$WORK"/n*/containers/*/rootfs; do umount "$f" 2>/dev/null; done
  if [ -n "$DOCKERD" ]; then
    docker -H "unix://$WORK/docker.sock" swarm leave --force >/dev/null 2>&1
    kill "$DOCKERD" 2>/dev/null; wait "$DOCKERD" 2>/dev/null
    umount -R "$WORK/docker" 2>/dev/null
    ip link del docker_gwbridge 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- berth: three managers in namespaces, busybox imported into each before it starts
import_busybox() {
  BERTH="$BIN/berth" BERTH_DATA_ROOT="$WORK/n$1" "$REPO/examples/images/make-busybox.sh" >/dev/null
}
make_nodes import_busybox
form_cluster
for _ in $(seq 100); do
  [ "$(b 0 node ls --format json | python3 -c 'import json,sys; print(sum(n["Status"]=="ready" for n in json.load(sys.stdin)))')" = 3 ] && break
  sleep 0.2
done
cat >"$WORK/compose.yaml" <<EOF
services:
  w:
    image: busybox:latest
    command: ["sleep", "3600"]
    network_mode: none
    deploy:
      replicas: $REPLICAS
EOF
berth_up="timeout 300 $BIN/berth -H unix://$WORK/n0.sock -f $WORK/compose.yaml -p bench up -d"
berth_down="timeout 300 $BIN/berth -H unix://$WORK/n0.sock -p bench down >/dev/null 2>&1 || true"

# --- docker: a single-node swarm
dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" \
  -H "unix://$WORK/docker.sock" --iptables=false --ip-masq=false --bridge=none \
  >"$WORK/dockerd.log" 2>&1 &
DOCKERD=$!
docker="docker -H unix://$WORK/docker.sock"
for _ in $(seq 100); do $docker info >/dev/null 2>&1 && break; sleep 0.2; done
rootfs=$(mktemp -d -p "$WORK")
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$rootfs/bin/$a"; done
tar -C "$rootfs" -c . | $docker import -c 'CMD ["sh"]' - busybox:latest >/dev/null
$docker swarm init --advertise-addr 127.0.0.1 >/dev/null
docker_up="timeout 600 $docker service create -q --detach=false --name bench --replicas $REPLICAS busybox:latest sleep 3600"
docker_down="$docker service rm bench >/dev/null 2>&1; while [ -n \"\$($docker ps -q)\" ]; do sleep 0.2; done"

echo "deploying $REPLICAS replicas: berth across 3 managers vs a single-node docker swarm ($RUNS runs each)"
hyperfine --runs "$RUNS" --export-json "$WORK/result.json" \
  -n berth-cluster --prepare "$berth_down" "$berth_up" \
  -n docker-swarm --prepare "$docker_down" "$docker_up"
python3 - "$WORK/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, d = r["berth-cluster"]["median"], r["docker-swarm"]["median"]
print(f"median: berth {b:.2f} s, docker swarm {d:.2f} s, ratio {b / d:.3f}")
PY
# where the last run's replicas ran
b 0 service ps --format json bench_w | python3 -c 'import collections, json, sys
tasks = [t for t in json.load(sys.stdin) if t.get("CurrentState", "").startswith("Running")]
print("running per node id:", dict(collections.Counter(t["NodeID"][:12] for t in tasks)))' || true
