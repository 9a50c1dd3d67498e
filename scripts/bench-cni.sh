#!/usr/bin/env bash
# CNI latency benchmark (not a test): lanes-cni + lanesd vs Debian's
# ptp + host-local, measured in the same run inside a scratch "node" netns.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
scripts/install-deps.sh >/dev/null
cargo build --release -q -p lanes-manager -p lanes-bench
shim=$(scripts/build-shim.sh)
[ -x target/cnidriver ] || sh ../shared/tools/cnidriver/build.sh "$PWD/target/cnidriver" >/dev/null
ns=lanes-bench-node-$$
work=$(mktemp -d /tmp/lanes-bench.XXXXXX)
trap 'ip netns del $ns 2>/dev/null || true; rm -rf "$work"' EXIT
ip netns add "$ns"; ip -n "$ns" link set lo up
ls -l "$shim" | awk '{print "lanes-cni size: " $5 " bytes"}'
ip netns exec "$ns" target/release/cni-latency "$shim" "$PWD/target/release/lanesd" \
  "$PWD/target/cnidriver" "$work"
