#!/usr/bin/env bash
# Unpack throughput on a generated 4-layer image (≈65 MB uncompressed, gzip layers, 48 big
# files and 4000 small ones), side by side in one run:
#   berth   — Snapshotter::unpack: all layers in parallel, each into its own snapshot,
#             verified (compressed digest + diff_id), syncfs before publishing;
#   tar     — GNU tar -xzf of the same layer blobs one after another, then `sync`;
#   umoci   — `umoci raw unpack` of the same OCI layout (if umoci is installed).
# Usage: bench/unpack.sh [RUNS]   (needs root for ownership; writes under ${TMPDIR:-/tmp})
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-unpack-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p berth-image --example unpack_bench
out=$("$CARGO_TARGET_DIR/release/examples/unpack_bench" "$work/berth" "$runs")
echo "$out" | grep -v '^layer_blobs='
mb=$(echo "$out" | sed -n 's/.*uncompressed_mb=\([0-9.]*\).*/\1/p')
berth_s=$(echo "$out" | sed -n 's/.*berth_unpack_median_s=\([0-9.]*\).*/\1/p')
blobs=$(echo "$out" | sed -n 's/^layer_blobs=//p' | tr ',' ' ')

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

tar_times=()
for _ in $(seq "$runs"); do
    rm -rf "$work/tar" && mkdir -p "$work/tar"
    start=$(now)
    for b in $blobs; do
        tar -xzf "$work/berth/store/blobs/sha256/$b" -C "$work/tar"
    done
    sync
    tar_times+=("$(echo "$(now) - $start" | bc -l)")
done
tar_s=$(printf '%s\n' "${tar_times[@]}" | median)
printf 'tar_sequential_median_s=%.3f tar_mb_per_s=%.1f\n' "$tar_s" "$(echo "$mb / $tar_s" | bc -l)"
printf 'ratio_berth_over_tar_time=%.2f\n' "$(echo "$berth_s / $tar_s" | bc -l)"

if command -v umoci >/dev/null; then
    mkdir -p "$work/layout" && tar -xf "$work/berth/image-oci.tar" -C "$work/layout"
    umoci_times=()
    for _ in $(seq "$runs"); do
        rm -rf "$work/umoci"
        start=$(now)
        umoci raw unpack --image "$work/layout:latest" "$work/umoci" >/dev/null
        sync
        umoci_times+=("$(echo "$(now) - $start" | bc -l)")
    done
    umoci_s=$(printf '%s\n' "${umoci_times[@]}" | median)
    printf 'umoci_median_s=%.3f umoci_mb_per_s=%.1f\n' "$umoci_s" "$(echo "$mb / $umoci_s" | bc -l)"
    printf 'ratio_berth_over_umoci_time=%.2f\n' "$(echo "$berth_s / $umoci_s" | bc -l)"
fi
