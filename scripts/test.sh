#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (idempotent), builds,
# runs every GoogleTest case through ctest, then fuzzes each parser for a bounded time.
#   scripts/test.sh            full suite
#   FUZZ_SECONDS=0 scripts/test.sh   skip fuzzing
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
scripts/setup.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
seconds=${FUZZ_SECONDS:-15}
if [ "$seconds" -gt 0 ]; then
  scripts/fuzz.sh "$seconds"
fi
echo "test.sh: all tests passed"
