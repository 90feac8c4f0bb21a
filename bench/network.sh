#!/usr/bin/env bash
# Network attach benchmark (root): median time to attach one network namespace to a berth
# bridge network (veth, addresses, routes, IPAM persistence, DNS registration), and the
# bring-up of 100 namespaces on one network. Uses 10.234.224.0/20 and its own nft table.
# Runs twice: state files on disk, then on tmpfs (to show the fsync share).
# BERTH_BENCH_N=<count> changes the number of namespaces (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== state files on disk (/var/tmp), as in production"
cargo bench -p berth-network --bench attach
echo "== state files on tmpfs (/dev/shm): the same work without the fsync cost"
BERTH_BENCH_STATE_DIR=/dev/shm cargo bench -p berth-network --bench attach
