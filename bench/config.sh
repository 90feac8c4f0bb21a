#!/usr/bin/env bash
# Loader benchmark: load + interpolate + merge + validate + normalize + graph of a generated
# 200-service Compose file, as whole processes, berth vs Docker Compose v1 (Debian's
# docker-compose), side by side in one hyperfine run. Needs: hyperfine, docker-compose.
#   bash bench/config.sh [SERVICES]
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen-compose.py "$services" >"$work/compose.yaml"
mkdir -p "$work/conf"
cargo build -q --release --bin berth
berth=$PWD/target/release/berth
[ -n "${CARGO_TARGET_DIR:-}" ] && berth=$CARGO_TARGET_DIR/release/berth
"$berth" -p bench -f "$work/compose.yaml" config -q
cmds=("$berth -p bench -f $work/compose.yaml config -q")
if command -v docker-compose >/dev/null; then
  cmds+=("docker-compose -p bench -f $work/compose.yaml config -q")
else
  echo "docker-compose not installed: timing berth alone" >&2
fi
hyperfine -N --warmup 3 --runs "${RUNS:-20}" "${cmds[@]}"
