#!/usr/bin/env bash
# Makes `busybox:latest` available to berth without any registry: builds a root filesystem
# from Debian's static busybox (package busybox-static) with one symlink per applet, and
# imports it as a one-layer image.
#
#   examples/images/make-busybox.sh [REF]            # default REF: busybox:latest
#   BERTH=target/debug/berth BERTH_DATA_ROOT=/tmp/berth examples/images/make-busybox.sh
#
# Equivalent by hand: build a rootfs dir, then `tar -C rootfs -c . | berth image import - busybox:latest`.
set -euo pipefail

ref=${1:-busybox:latest}
berth=${BERTH:-berth}
busybox=${BUSYBOX:-/bin/busybox}

if [[ ! -x $busybox ]]; then
    echo "make-busybox: $busybox not found; install it with: apt-get install busybox-static" >&2
    exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var,proc,sys,dev,run,tmp}
chmod 1777 "$rootfs/tmp"
install -m 0755 "$busybox" "$rootfs/bin/busybox"
# One symlink per applet in /bin, like `busybox --install -s /bin` run inside the image
# (run on the host, --install would point the links at the host path of the binary).
"$busybox" --list | while read -r applet; do
    [[ $applet == busybox || -e $rootfs/bin/$applet ]] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

tar -C "$rootfs" --numeric-owner -c . |
    "$berth" image import \
        -c 'CMD ["sh"]' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -m "busybox from $busybox" \
        - "$ref"
