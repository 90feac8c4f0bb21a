#!/usr/bin/env bash
# The shared corpus through `berth config -q` and Debian's `docker-compose config -q` (1.29),
# each file alone in an empty directory with an empty environment (no `.env`, no variables),
# and the load rate of each side by side. Needs: docker-compose.
#   bash bench/corpus.sh [CORPUS_DIR]       TSV=FILE keeps the per-file results
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-../shared/corpus/compose}
cargo build -q --bin berth
berth=$PWD/target/debug/berth
[ -n "${CARGO_TARGET_DIR:-}" ] && berth=$CARGO_TARGET_DIR/debug/berth
command -v docker-compose >/dev/null || { echo "docker-compose is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tsv=${TSV:-$work/results.tsv}
: >"$tsv"
for file in "$corpus"/*/*; do
  dir=$(mktemp -d -p "$work")
  cp "$file" "$dir/compose.yaml"
  set +e
  (cd "$dir" && env -i PATH=/usr/bin:/bin timeout 60 "$berth" -f compose.yaml -p corpus config -q >/dev/null 2>"$dir/berth.err")
  b=$?
  (cd "$dir" && env -i PATH=/usr/bin:/bin timeout 60 docker-compose -f compose.yaml -p corpus config -q >/dev/null 2>"$dir/compose.err")
  c=$?
  set -e
  printf '%s\t%s\t%s\t%s\n' "${file#"$corpus"/}" "$b" "$c" "$(head -n1 "$dir/berth.err")" >>"$tsv"
  rm -rf "$dir"
done
awk -F'\t' '
  { n++; b += ($2 == 0); c += ($3 == 0); if ($2 == 0 && $3 != 0) bo++; if ($2 != 0 && $3 == 0) { co++; only = only "  " $1 "\n" } }
  END {
    printf "files: %d\nberth config -q loads:          %d (%.1f %%)\ndocker-compose config -q loads: %d (%.1f %%)\n", n, b, 100*b/n, c, 100*c/n
    printf "only berth loads: %d; only docker-compose loads: %d\n%s", bo, co, only
  }' "$tsv"
