#!/bin/sh
# Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) from the shared Compose
# corpus: whole files for the loader and interpolation targets, the sequence items of
# `ports:`/`volumes:` for the short-syntax target, durations and sizes for `units`, and two
# hand-written .env files for `dotenv`.
# Usage: fuzz/seed.sh [CORPUS_DIR]   (default /work/shared/corpus/compose)
set -eu
src=${1:-/work/shared/corpus/compose}
here=$(cd "$(dirname "$0")" && pwd)
for t in load load_document interpolate short_syntax units dotenv; do mkdir -p "$here/corpus/$t"; done
n=0
for f in "$src"/*/*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    for t in load load_document interpolate; do cp "$f" "$here/corpus/$t/file$n"; done
done
# one item per seed: `- "8080:80"` under ports:, `- ./data:/data:ro` under volumes:
awk '
    /^[[:space:]]*(ports|volumes|expose):[[:space:]]*$/ { take = 1; next }
    take && /^[[:space:]]*-[[:space:]]/ { sub(/^[[:space:]]*-[[:space:]]*/, ""); gsub(/^["\047]|["\047]$/, ""); print; next }
    { take = 0 }
' "$src"/*/* | sort -u | awk -v dir="$here/corpus/short_syntax" '{ printf "%s", $0 > (dir "/item" NR); close(dir "/item" NR) }'
grep -hoE '(interval|timeout|start_period|start_interval|stop_grace_period|mem_limit|memory|shm_size|memswap_limit|delay|window|monitor)[[:space:]]*:[[:space:]]*["\047]?[0-9][0-9A-Za-z.]*' "$src"/*/* \
    | sed -E 's/^[^:]*:[[:space:]]*["\047]?//' | sort -u \
    | awk -v dir="$here/corpus/units" '{ printf "%s", $0 > (dir "/unit" NR); close(dir "/unit" NR) }'
# the corpus holds no .env files: two hand-written ones
printf 'A=1\nexport B="x ${A}"\nC=\047single\047 # c\nD="multi\nline"\nE=${B:-d}\n#c\n' > "$here/corpus/dotenv/seed1"
printf 'KEY=value\n' > "$here/corpus/dotenv/seed2"
for t in load load_document interpolate short_syntax units dotenv; do
    echo "$t: $(ls "$here/corpus/$t" | wc -l) seeds"
done
