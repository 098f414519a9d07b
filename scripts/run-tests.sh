#!/usr/bin/env bash
# Runs the compiled test suite. `unit` = no namespace-building tests; default = everything.
# End-to-end files build their own network namespaces, so files run one at a time. The other
# files (unit, loopback live tests, bench smoke) run inside a private network namespace when
# root: loopback MPTCP storms there cannot trip the host's MPTCP blackhole detection
# (net.mptcp.blackhole_timeout disables active MPTCP after SYN losses) or touch its nftables.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p .
mode=${1:-all}
local_files=$(find dist/test -name '*.test.js' -not -path 'dist/test/e2e/*' | sort)
e2e_files=$(find dist/test/e2e -name '*.test.js' | sort)
run() { node --test --test-concurrency=1 --test-reporter=spec "$@"; }

status=0
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null; then
  ns="mpx-tests-$$"
  ip netns add "$ns"
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
  ip -n "$ns" link set lo up
  ip netns exec "$ns" bash -c "$(declare -f run); run $(echo $local_files)" || status=1
else
  run $local_files || status=1
fi
if [ "$mode" != unit ]; then
  run $e2e_files || status=1
  # The default takes the native fast path where it applies: the files that exercise the data
  # path run once more on the TS path (fastpath.test.ts sets each of its proxies itself).
  MPTCP_PROXY_TEST_FAST_PATH=off run $(printf 'dist/test/e2e/%s.test.js ' socks core-http ops-fuzz ops-limits) || status=1
  # The native fast path's parser and loops once more, under AddressSanitizer (its own build of
  # the addon), in the private namespace like the other local files.
  if [ -f native/binding.gyp ]; then FASTPATH_FUZZ_CASES=${FASTPATH_FUZZ_CASES:-5000} ${ns:+ip netns exec "$ns"} bash scripts/asan-fuzz.sh || status=1; fi
fi
exit $status
