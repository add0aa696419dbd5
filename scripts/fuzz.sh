#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 15; CI runs 4 targets x 15 s = 60 s)
# Crashing inputs are written to build-fuzz/crashes/<target>/ and make the script fail.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-15}
build=${FUZZ_BUILD_DIR:-$here/build-fuzz}
if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found; run scripts/setup.sh --deps-only" >&2
  exit 1
fi
CC=clang CXX=clang++ cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPGOLF_FUZZ=ON -DPGOLF_CUDA=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build"
status=0
for target in shard config safetensors artifact; do
  corpus=$(mktemp -d)
  cp "$here/tests/fuzz/corpus/$target/"* "$corpus/"
  mkdir -p "$build/crashes/$target"
  echo "fuzz.sh: fuzz_$target for ${seconds}s"
  if ! "$build/tests/fuzz/fuzz_$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build/crashes/$target/" -print_final_stats=1 "$corpus" 2>"$build/fuzz_$target.log"; then
    echo "fuzz.sh: fuzz_$target FAILED; see $build/fuzz_$target.log and $build/crashes/$target/" >&2
    tail -n 40 "$build/fuzz_$target.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/fuzz_$target.log" | sed "s/^/  /"
  fi
  rm -rf "$corpus"
done
exit $status
