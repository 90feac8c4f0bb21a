#!/bin/sh
# Regenerates data/syscalls-x86_64.txt ("name number" per line) from the kernel UAPI headers
# installed by Debian's linux-libc-dev. The seccomp compiler resolves profile names with it.
set -eu
here=$(dirname "$0")/..
awk '$1 == "#define" && $2 ~ /^__NR_/ && $3 ~ /^[0-9]+$/ { sub(/^__NR_/, "", $2); print $2, $3 }' \
    /usr/include/x86_64-linux-gnu/asm/unistd_64.h | sort -k2 -n >"$here/data/syscalls-x86_64.txt"
# aarch64 uses the generic table; on 64-bit the __NR3264_ names drop their suffix.
awk '$1 == "#define" && $2 ~ /^__NR(3264)?_/ && $3 ~ /^[0-9]+$/ {
        n = $2; sub(/^__NR(3264)?_/, "", n); print n, $3 }' \
    /usr/include/asm-generic/unistd.h | grep -v '^syscalls ' | sort -k2 -n -u >"$here/data/syscalls-aarch64.txt"
