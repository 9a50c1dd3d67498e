#!/usr/bin/env bash
# BGP benchmark (not a test): ADD -> route on a BIRD ToR vs BIRD alone,
# render+check+apply at 1,000 peers / 5,000 blocks, RSS with 1,000 routes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
scripts/install-deps.sh >/dev/null
cargo build --release -q -p lanes-manager -p lanes-bench
shim=$(scripts/build-shim.sh)
work=$(mktemp -d /tmp/lanes-bgpbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
target/release/bgp-latency "$shim" "$PWD/target/release/lanesd" "$work"
