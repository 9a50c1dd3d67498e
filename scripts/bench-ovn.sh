#!/usr/bin/env bash
# OVN secondary-lane benchmark (not a test), one run on real OVN (2 nodes as netns):
# ADD latency with eth0+eth1 vs eth0 only, eth1 cross-node ping/iperf3 of lanes-made pods vs
# pods wired by hand on the same OVN, lanesd RSS. See benches/src/ovn_latency.rs.
# Self-contained: everything it makes (netns, daemons, temp dirs) is removed on exit, also on
# failure or Ctrl-C. Env: OVN_BENCH_PODS (50), OVN_BENCH_ROUNDS (6), OVN_BENCH_IPERF_SECS (4),
# OVN_BENCH_LOGS=<dir> (keep the daemons' logs there), OVN_BENCH_BUILD=0 (skip cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
scripts/install-deps.sh >/dev/null
shim="$PWD/target/$(uname -m)-unknown-linux-musl/release-shim/lanes-cni"   # scripts/build-shim.sh builds it
if [ "${OVN_BENCH_BUILD:-1}" != 0 ]; then   # OVN_BENCH_BUILD=0: use the binaries as built
  cargo build --release -q -p lanes-manager -p lanes-bench
  shim=$(scripts/build-shim.sh)
fi

tag=lob$$            # every netns the benchmark makes is named "$tag-..."
work=$(mktemp -d /tmp/lanes-ovnbench.XXXXXX)
bench=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The benchmark removes what it made; this is for a benchmark that died or was killed.
  if [ -n "$bench" ] && kill -0 "$bench" 2>/dev/null; then
    kill -TERM "$bench" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$bench" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$bench" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  # Daemons run under `setpriv --pdeathsig KILL`; what may still live in our namespaces
  # (lanesd's BIRD, which outlives lanesd by design) is ended by PID, then the netns go.
  local ns pids
  for ns in $(ip netns list | awk -v t="$tag-" 'index($1, t) == 1 {print $1}'); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      echo "cleanup: killing leftover PIDs in $ns: $pids" >&2
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/tmp"
echo "ovs $(ovs-vswitchd --version | awk 'NR==1{print $NF}'), ovn $(ovn-controller --version | awk 'NR==1{print $NF}'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
# In the background so that a signal to this script reaches the trap at once.
TMPDIR="$work/tmp" LANES_BENCH_TAG="$tag" target/release/ovn-latency \
  "$shim" "$PWD/target/release/lanesd" "$work" &
bench=$!
wait "$bench"
bench=
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
