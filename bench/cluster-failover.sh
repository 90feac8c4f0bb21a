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
WORK=$(mktemp -d /tmp/berth-failover-XXXXXX)
. "$(dirname "$0")/cluster-nodes.sh"
cleanup() { remove_nodes; rm -rf "$WORK"; }
trap cleanup EXIT
make_nodes
form_cluster
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
