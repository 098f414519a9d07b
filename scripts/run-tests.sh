#!/usr/bin/env bash
# Runs the compiled test suite. `unit` = no root/namespace tests; default = everything.
# End-to-end files build their own network namespaces, so files run one at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p .
mode=${1:-all}
if [ "$mode" = unit ]; then
  files=$(find dist/test -name '*.test.js' -not -path 'dist/test/e2e/*' | sort)
else
  files=$(find dist/test -name '*.test.js' | sort)
fi
exec node --test --test-concurrency=1 --test-reporter=spec $files
