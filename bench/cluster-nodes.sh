# Sourced by bench/cluster-failover.sh and bench/cluster-deploy.sh: three real berthds, each in
# its own network namespace with a veth on a bridge made here (traffic stays on it), formed
# into a 3-manager cluster. Needs BIN (the directory of berth and berthd) and WORK (a scratch
# directory) set; defines PIDS, start I, b I COMMAND…, make_nodes [HOOK] (HOOK I runs for
# each node before its berthd starts), form_cluster and remove_nodes (for the EXIT trap).
TAG=bn$$
SUB=10.232.$(( $$ % 200 + 20 ))
declare -a PIDS
remove_nodes() {
  set +e
  for i in 0 1 2; do
    [ -n "${PIDS[$i]:-}" ] && kill -9 "${PIDS[$i]}" 2>/dev/null
    for p in $(ip netns pids ${TAG}n$i 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del ${TAG}n$i 2>/dev/null
  done
  ip link del ${TAG}br 2>/dev/null
  return 0
}
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
  echo "berthd $i did not answer; see $WORK/n$i.log" >&2; exit 1
}
b() { local i=$1; shift; timeout 120 "$BIN/berth" "$1" -H "unix://$WORK/n$i.sock" "${@:2}"; }
make_nodes() {
  ip link add ${TAG}br type bridge && ip link set ${TAG}br up
  for i in 0 1 2; do
    ip netns add ${TAG}n$i
    ip link add ${TAG}v$i type veth peer name eth0 netns ${TAG}n$i
    ip link set ${TAG}v$i master ${TAG}br up
    ip -n ${TAG}n$i addr add $SUB.$((i+1))/24 dev eth0
    ip -n ${TAG}n$i link set eth0 up; ip -n ${TAG}n$i link set lo up
    [ -n "${1:-}" ] && "$1" "$i"
    start $i
  done
}
form_cluster() {
  b 0 cluster init --advertise-addr $SUB.1 >/dev/null
  local token; token=$(b 0 cluster join-token manager -q)
  b 1 cluster join --token "$token" --advertise-addr $SUB.2 $SUB.1 >/dev/null
  b 2 cluster join --token "$token" --advertise-addr $SUB.3 $SUB.1 >/dev/null
}
