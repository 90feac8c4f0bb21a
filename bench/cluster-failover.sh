#!/bin/bash
# Leader failover time of a 3-manager berth cluster: each manager a real berthd in its own
# network namespace on a bridge this script makes (traffic stays on it). The leader is
# killed with SIGKILL; the time until `berth node ls` on a survivor names a new leader is
# taken (an upper bound: it includes the CLI's polling, one call every few ms). The killed
# manager is started again and rejoins from its disk before the next round.
#
#   bench/cluster-failover.sh [ROUNDS]     (root; builds nothing: run `cargo build
#                                            --workspace` first; BIN=target/debug by default)
set -euo pipefail
ROUNDS=${1:-5}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/debug}
[ -x "$BIN/berthd" ] || { echo "no $BIN/berthd: cargo build --workspace first (or set BIN)" >&2; exit 1; }
TAG=bf$$
WORK=$(mktemp -d /tmp/berth-failover-XXXXXX)
SUB=10.232.$(( $$ % 200 + 20 ))
declare -a PIDS
cleanup() {
  for i in 0 1 2; do
    [ -n "${PIDS[$i]:-}" ] && kill -9 "${PIDS[$i]}" 2>/dev/null || true
    for p in $(ip netns pids ${TAG}n$i 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del ${TAG}n$i 2>/dev/null || true
  done
  ip link del ${TAG}br 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip link add ${TAG}br type bridge && ip link set ${TAG}br up
start() {
  local i=$1
  nsenter --net=/run/netns/${TAG}n$i -- "$BIN/berthd" --data-root "$WORK/n$i" \
    -H "unix://$WORK/n$i.sock" --run-root "$WORK/run$i" --docker-host none \
    --log-level warn >>"$WORK/n$i.log" 2>&1 &
  PIDS[$i]=$!
  for _ in $(seq 300); do
    timeout 5 "$BIN/berth" node -H "unix://$WORK/n$i.sock" ls >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "berthd $i did not answer" >&2; exit 1
}
for i in 0 1 2; do
  ip netns add ${TAG}n$i
  ip link add ${TAG}v$i type veth peer name eth0 netns ${TAG}n$i
  ip link set ${TAG}v$i master ${TAG}br up
  ip -n ${TAG}n$i addr add $SUB.$((i+1))/24 dev eth0
  ip -n ${TAG}n$i link set eth0 up; ip -n ${TAG}n$i link set lo up
  start $i
done
b() { local i=$1; shift; timeout 60 "$BIN/berth" "$1" -H "unix://$WORK/n$i.sock" "${@:2}"; }
b 0 cluster init --advertise-addr $SUB.1 >/dev/null
T=$(b 0 cluster join-token manager -q)
b 1 cluster join --token "$T" --advertise-addr $SUB.2 $SUB.1 >/dev/null
b 2 cluster join --token "$T" --advertise-addr $SUB.3 $SUB.1 >/dev/null
leader_of() { # the rig index of the leader as node $1 sees it, or nothing
  local json; json=$(b "$1" node ls --format json 2>/dev/null) || return 0
  python3 -c 'import json,sys
ids=sys.argv[2:]
for n in json.loads(sys.argv[1]):
    if n["ManagerStatus"]=="leader" and n["ID"] in ids: print(ids.index(n["ID"]))' "$json" "${IDS[@]}"
}
declare -a IDS
for i in 0 1 2; do
  IDS[$i]=$(b $i node ls --format json | python3 -c 'import json,sys; print([n["ID"] for n in json.load(sys.stdin) if n["Self"]][0])')
done
for r in $(seq "$ROUNDS"); do
  L=""; for _ in $(seq 100); do L=$(leader_of 0; true); [ -n "$L" ] && break; L=$(leader_of 1); [ -n "$L" ] && break; sleep 0.1; done
  S=$(( (L + 1) % 3 ))
  t0=$(date +%s%N)
  kill -9 "${PIDS[$L]}"; wait "${PIDS[$L]}" 2>/dev/null || true
  while :; do
    N=$(leader_of $S)
    if [ -n "$N" ] && [ "$N" != "$L" ]; then break; fi
    if (( ($(date +%s%N) - t0) > 20000000000 )); then echo "round $r: no new leader within 20 s" >&2; exit 1; fi
  done
  t1=$(date +%s%N)
  echo "round $r: leader ${IDS[$L]:0:8} killed, new leader after $(( (t1 - t0) / 1000000 )) ms"
  start "$L"
done
