#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages that are missing, npm
# packages, the native splice addon, the TypeScript build. Usage: setup.sh run|test|bench
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}

# What each mode needs from Debian (checked with dpkg, installed only when missing). Every program
# the proxy, the README's examples, the tests or the bench run must come from a package listed for
# that mode, even one every Debian machine has (test/ops/setup-packages.test.ts checks the spawned
# programs against `setup.sh list MODE`). mptcpize is its own package, not part of mptcpd.
pkgs_run="iproute2 procps util-linux libc-bin coreutils dash libpcap-dev nftables mptcpd mptcpize curl"
# squid and dante-server: the real parent proxies of test/e2e/parents.test.ts.
pkgs_test="$pkgs_run iperf3 tcpdump tshark python3 chromium systemd squid dante-server"
pkgs_bench="$pkgs_test nginx haproxy microsocks wrk"
case "$mode" in
  run) want=$pkgs_run ;;
  test) want=$pkgs_test ;;
  bench) want=$pkgs_bench ;;
  list) eval "echo \$pkgs_${2:-}"; exit 0 ;;
  *) echo "usage: $0 run|test|bench|list MODE" >&2; exit 2 ;;
esac

missing=()
for p in $want; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Daemons pulled in by bench peers must not keep ports busy; the bench starts its own.
  for svc in nginx squid danted haproxy; do systemctl stop "$svc" >/dev/null 2>&1 || true; done
fi

# npm packages: reinstall only when package-lock.json changed since the last install here.
if ! cmp -s package-lock.json node_modules/.setup-lock 2>/dev/null; then
  npm ci --no-fund --no-audit --loglevel=error
  cp package-lock.json node_modules/.setup-lock
fi

if [ -f native/binding.gyp ]; then
  if [ ! -f native/build/Release/splice_relay.node ] || [ -n "$(find native -path native/build -prune -o -type f -newer native/build/Release/splice_relay.node -print 2>/dev/null)" ]; then
    npx node-gyp rebuild --directory native --loglevel=warn >/dev/null || echo "setup: native splice addon failed to build; the JS relay will be used" >&2
  fi
fi

npx tsc -p .

if [ "$(cat /proc/sys/net/mptcp/enabled 2>/dev/null || echo 0)" != 1 ]; then
  echo "setup: note: net.mptcp.enabled is not 1; the proxy will fall back to TCP (sysctl -w net.mptcp.enabled=1)" >&2
fi
