#!/bin/bash
# Bring-up of 100 containers on one user-defined bridge network (`run -d --network bench
# busybox sleep 600`, all at once, until all run), berth vs docker (Debian's docker.io, a
# private dockerd with its own data root, exec root, pid file, socket), side by side in one
# hyperfine run; every container is removed between runs, the networks at the end. Then
# a name lookup across the network, to show both answer by name.
#
#   sudo bench/network-100.sh [RUNS] [N]
set -eu
runs=${1:-3}
n=${2:-100}
. "$(dirname "$0")/docker-env.sh"
# berth-dns serves names on user-defined networks; the CLI finds it next to itself
(cd "$repo" && cargo build --quiet --release -p berth-network --bin berth-dns)
strip -o "$work/bin/berth-dns" "$target/release/berth-dns"

net=bench$$
$berth network create "$net" >/dev/null
$docker network create "$net" >/dev/null
cleanup_networks() {
    $berth network rm "$net" >/dev/null 2>&1 || true
    $docker network rm "$net" >/dev/null 2>&1 || true
    stop_docker
}
trap cleanup_networks EXIT

cat >"$work/start.sh" <<SH
#!/bin/bash
# start.sh CLI: N concurrent run -d on the network, then wait until N containers run
cli=\$1
seq $n | xargs -P $n -I{} sh -c "\$cli run -d --network $net busybox sleep 600 >/dev/null"
while [ "\$(\$cli ps -q | wc -l)" -lt $n ]; do sleep 0.05; done
SH
cat >"$work/clean.sh" <<SH
#!/bin/bash
cli=\$1
ids=\$(\$cli ps -aq)
[ -z "\$ids" ] || \$cli rm -f \$ids >/dev/null
SH
chmod +x "$work/start.sh" "$work/clean.sh"

hyperfine --runs "$runs" --export-json "$work/net100.json" \
    -n berth --prepare "$work/clean.sh '$berth'" "$work/start.sh '$berth'" \
    -n docker --prepare "$work/clean.sh '$docker'" "$work/start.sh '$docker'"
# names work on both: one named container, looked up from another
for cli in "$berth" "$docker"; do
    $cli run -d --name "probe$$" --network "$net" busybox sleep 60 >/dev/null
    found=$($cli run --rm --network "$net" busybox nslookup "probe$$" 2>&1 | grep -c '^Address' || true)
    echo "${cli%% *}: nslookup probe$$ -> $found Address lines (server + answer)"
done
"$work/clean.sh" "$berth"; "$work/clean.sh" "$docker"
python3 - "$work/net100.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, d = r["berth"], r["docker"]
print(f"median: berth {b['median']:.2f} s, docker {d['median']:.2f} s, ratio {b['median']/d['median']:.3f}")
PY
