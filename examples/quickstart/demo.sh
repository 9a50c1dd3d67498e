#!/usr/bin/env bash
# Single-node demo: lanesd in a network namespace "node", two pods made
# through lanes-cni exactly as a runtime would (cnidriver = Debian's libcni),
# a ping between them, and `lanesctl ipam show`. Everything it makes lives
# under a temp dir and in namespaces named lanes-demo-*; all removed on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "run as root (it creates network namespaces)"; exit 1; }
"$root/scripts/install-deps.sh" >/dev/null
cd "$root"
echo "== building"
cargo build --release -p lanes-manager -q
shim=$(scripts/build-shim.sh)
work=$(mktemp -d /tmp/lanes-demo.XXXXXX)
node=lanes-demo-node-$$; pods=(lanes-demo-pod1-$$ lanes-demo-pod2-$$)
cleanup() {
  [ -n "${lanesd_pid:-}" ] && kill "$lanesd_pid" 2>/dev/null && wait "$lanesd_pid" 2>/dev/null
  for ns in "${pods[@]}" "$node"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
[ -x target/cnidriver ] || sh ../shared/tools/cnidriver/build.sh "$root/target/cnidriver" >/dev/null
mkdir -p "$work/bin" "$work/store"
cp "$shim" "$work/bin/lanes"
cp "$here/store/ippool.yaml" "$work/store/"
sed "s#/run/lanes/lanes.sock#$work/run/lanes.sock#" "$here/10-lanes.conflist" > "$work/lanes.conflist"
ip netns add "$node"; ip -n "$node" link set lo up
ip -n "$node" addr add 192.168.100.11/32 dev lo   # the node's own address
echo "== starting lanesd in netns $node"
ip netns exec "$node" target/release/lanesd --node-name node1 --datastore-path "$work/store" \
  --socket "$work/run/lanes.sock" --run-dir "$work/run" --bgp-enabled false 2> "$work/lanesd.log" &
lanesd_pid=$!
for _ in $(seq 100); do [ -S "$work/run/lanes.sock" ] && break; sleep 0.05; done
cni() { ip netns exec "$node" target/cnidriver -conf "$work/lanes.conflist" -path "$work/bin" -cache-dir "$work/cache" "$@"; }
ips=()
for i in 0 1; do
  ip netns add "${pods[$i]}"
  echo "== ADD pod$((i+1)) (netns ${pods[$i]})"
  out=$(cni -netns "/run/netns/${pods[$i]}" -id "demo-pod$((i+1))" -args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod$((i+1))" add)
  ip=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])')
  ips+=("$ip"); echo "   pod$((i+1)) eth0 = $ip"
done
echo "== pod1 inside:"; ip -n "${pods[0]}" -br addr show eth0; ip -n "${pods[0]}" route
echo "== ping pod1 -> pod2 (${ips[1]})"; ip netns exec "${pods[0]}" ping -c3 -W1 "${ips[1]}"
echo "== ping pod2 -> node (192.168.100.11)"; ip netns exec "${pods[1]}" ping -c1 -W1 192.168.100.11
echo "== lanesctl ipam show"; target/release/lanesctl --socket "$work/run/lanes.sock" ipam show
echo "== lanesctl attachments"; target/release/lanesctl --socket "$work/run/lanes.sock" attachments
for i in 0 1; do cni -netns "/run/netns/${pods[$i]}" -id "demo-pod$((i+1))" del; done
echo "== DEL done; demo finished, cleaning up"
