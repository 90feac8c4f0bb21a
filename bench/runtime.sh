#!/bin/sh
# berth-runc alone vs runc: `run` of the same busybox bundle running `true`, alternating
# A B A B so machine drift hits both alike. Prints each one's median wall time and the ratio.
#
#   sudo bench/runtime.sh [RUNS]        (needs Debian's runc and busybox-static)
#
# The berth-runc binary is the release build, stripped (the memfd re-exec copies the whole
# binary, so its size is part of the cost).
set -eu
runs=${1:-20}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/berth-bench-runtime.XXXXXX)
trap 'rm -rf "$work"' EXIT

command -v runc >/dev/null || { echo "install Debian's runc" >&2; exit 2; }
bb=$(command -v busybox) || { echo "install Debian's busybox-static" >&2; exit 2; }

(cd "$repo" && cargo build --quiet --release -p berth-runtime --bin berth-runc)
target=${CARGO_TARGET_DIR:-$repo/target}
strip -o "$work/berth-runc" "$target/release/berth-runc"

mkdir -p "$work/bundle/rootfs/bin"
cp "$bb" "$work/bundle/rootfs/bin/busybox"
for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -s busybox "$work/bundle/rootfs/bin/$a"
done
"$work/berth-runc" spec --bundle "$work/bundle"
# Same spec for both: runc's defaults plus Docker's seccomp profile, no terminal, `true`.
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' "$work/bundle/config.json"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$work/a"; : >"$work/b"
"$work/berth-runc" --root "$work/ra" run --bundle "$work/bundle" warm-a
runc --root "$work/rb" run --bundle "$work/bundle" warm-b
i=0
while [ "$i" -lt "$runs" ]; do
    t=$(now); "$work/berth-runc" --root "$work/ra" run --bundle "$work/bundle" a; echo $(( $(now) - t )) >>"$work/a"
    t=$(now); runc --root "$work/rb" run --bundle "$work/bundle" b; echo $(( $(now) - t )) >>"$work/b"
    i=$((i + 1))
done
a=$(median <"$work/a"); b=$(median <"$work/b")
echo "berth-runc run: median $(echo "$a" | awk '{printf "%.1f", $1/1e6}') ms over $runs runs"
echo "runc run:       median $(echo "$b" | awk '{printf "%.1f", $1/1e6}') ms over $runs runs"
echo "ratio berth-runc/runc: $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a/b}') (target <= 1.5)"
