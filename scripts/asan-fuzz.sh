#!/usr/bin/env bash
# Test mode for the native fast path under AddressSanitizer: builds the addon with
# -fsanitize=address into a scratch copy of native/, then runs the differential parser fuzz,
# the loopback test of the fast path's loops (real connections through accept, handshakes,
# connects, splice pipes, refusals and hand-offs; it checks the ASan build is the one loaded)
# and any further test files given as arguments, in node with libasan preloaded and the loader
# pointed at the ASan build. Any ASan report fails the run. The loop test binds 127.0.0.1 only;
# run-tests.sh runs this script inside its private namespace.
#   scripts/asan-fuzz.sh [dist/test/....test.js ...]    (FASTPATH_FUZZ_CASES=N widens the fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p .
work=$(mktemp -d /tmp/mpx-asan.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r native/binding.gyp native/src "$work/"
ln -s "$PWD/node_modules" "$work/node_modules"
CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address" \
  npx node-gyp rebuild --directory "$work" --loglevel=warn >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
addon="$work/build/Release/splice_relay.node"
if [ "$(nm -D "$addon" | grep -c __asan_)" = 0 ]; then echo "asan-fuzz: $addon is not instrumented" >&2; exit 1; fi
libasan=$(g++ -print-file-name=libasan.so)
log="$work/asan"
# Node itself leaks at exit by design: leaks are not what this run looks for.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$log"
export MPTCP_PROXY_SPLICE_ADDON="$addon" LD_PRELOAD="$libasan"
export FASTPATH_FUZZ_CASES=${FASTPATH_FUZZ_CASES:-20000}
status=0
node --test --test-concurrency=1 --test-reporter=spec dist/test/fastpath/parse-fuzz.test.js dist/test/fastpath/loop-asan.test.js "$@" || status=1
unset LD_PRELOAD
if ls "$log".* >/dev/null 2>&1; then
  cat "$log".* >&2
  echo "asan-fuzz: AddressSanitizer reported errors" >&2
  exit 1
fi
[ $status -eq 0 ] && echo "asan-fuzz: passed under AddressSanitizer ($addon)"
exit $status
