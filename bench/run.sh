#!/bin/bash
# `berth container run --rm busybox true` vs `docker run --rm busybox true` (Debian's docker.io, a
# private dockerd), same root filesystem, side by side in one hyperfine run. Prints both and
# the ratio berth/docker (target ≤ 0.15).
#
#   sudo bench/run.sh [RUNS]
set -eu
runs=${1:-30}
. "$(dirname "$0")/docker-env.sh"

hyperfine --warmup 3 --runs "$runs" --export-json "$work/run.json" \
    -n berth "$berth container run --rm busybox true" \
    -n docker "$docker run --rm busybox true"
python3 - "$work/run.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, d = r["berth"], r["docker"]
print(f"median: berth {b['median']*1000:.0f} ms, docker {d['median']*1000:.0f} ms, ratio {b['median']/d['median']:.3f}")
print(f"mean:   berth {b['mean']*1000:.0f} ms, docker {d['mean']*1000:.0f} ms, ratio {b['mean']/d['mean']:.3f}")
PY
