#!/bin/bash
# 100 containers started concurrently (`run -d busybox sleep 600`, 100 at once) until all
# run, berth vs docker (Debian's docker.io, a private dockerd), side by side in one hyperfine
# run; every container is removed between runs.
#
#   sudo bench/run-100.sh [RUNS] [N]
set -eu
runs=${1:-3}
n=${2:-100}
. "$(dirname "$0")/docker-env.sh"

cat >"$work/start.sh" <<SH
#!/bin/bash
# start.sh CLI: N concurrent run -d, then wait until N containers are running
cli=\$1
seq $n | xargs -P $n -I{} sh -c "\$cli container run -d busybox sleep 600 >/dev/null"
while [ "\$(\$cli container ps -q | wc -l)" -lt $n ]; do sleep 0.05; done
SH
cat >"$work/clean.sh" <<SH
#!/bin/bash
cli=\$1
ids=\$(\$cli container ps -aq)
[ -z "\$ids" ] || \$cli container rm -f \$ids >/dev/null
SH
chmod +x "$work/start.sh" "$work/clean.sh"

hyperfine --runs "$runs" --export-json "$work/run100.json" \
    -n berth --prepare "$work/clean.sh '$berth'" "$work/start.sh '$berth'" \
    -n docker --prepare "$work/clean.sh '$docker'" "$work/start.sh '$docker'"
"$work/clean.sh" "$berth"; "$work/clean.sh" "$docker"
python3 - "$work/run100.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, d = r["berth"], r["docker"]
print(f"median: berth {b['median']:.2f} s, docker {d['median']:.2f} s, ratio {b['median']/d['median']:.3f}")
PY
