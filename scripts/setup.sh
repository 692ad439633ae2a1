#!/usr/bin/env bash
# Sets up a fresh machine for masq: the Debian programs the lab and the end-to-end tests use, then
# the npm dependencies (which also build the TUN addon and compile the TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc g++ make liburing-dev clang-format ethtool iproute2 procps iputils-ping traceroute curl iperf3 nftables socat tcpdump python3 natpmpc python3-pyftpdlib tftpd-hpa tftp-hpa ngircd vsftpd prometheus python3-scapy hping3 apache2-utils lighttpd wrk iputils-tracepath coturn miniupnpc rsyslog tshark chromium util-linux systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: installing ${missing[*]} needs root (run with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
npm ci --no-audit --no-fund
