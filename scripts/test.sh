#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (idempotent), builds,
# runs every GoogleTest case through ctest, reruns the SIMT emulator's suite under
# ASan + UBSan, packs and checks the device bundle, then fuzzes each parser for a bounded time.
#   scripts/test.sh            full suite
#   FUZZ_SECONDS=0 scripts/test.sh   skip fuzzing
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
scripts/setup.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
# The SIMT emulator's suite once more under AddressSanitizer + UBSan (the fibers are
# annotated for ASan), in its own build directory and with a time limit.
asan=${EMU_ASAN_BUILD_DIR:-build-emu-asan}
cmake -S . -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGOLF_EMU_SANITIZE=ON -DPGOLF_CUDA=OFF >/dev/null
if cmake --build "$asan" --target help | grep -q '^pgolf_emu_tests: '; then
  cmake --build "$asan" --target pgolf_emu_tests
  timeout 600 "$asan/tests/pgolf_emu_tests" --gtest_brief=1
  echo "test.sh: the emulator suite passed under ASan + UBSan"
else
  echo "test.sh: no CUDA headers found, so the SIMT emulator (and its sanitizer run) is not built"
fi
# The device bundle (scripts/device_bundle.sh, docs/gpu.md): packed from this build and checked
# here without a GPU (library resolution, the binaries starting, the GPU tests refusing).
build_dir=${BUILD_DIR:-build}
if cmake --build "$build_dir" --target help | grep -q '^pgolf_gpu_tests: '; then
  BUILD_DIR="$build_dir" scripts/device_bundle.sh --self-test
else
  echo "test.sh: this build has no CUDA backend, so the device bundle is not built"
fi
seconds=${FUZZ_SECONDS:-15}
if [ "$seconds" -gt 0 ]; then
  scripts/fuzz.sh "$seconds"
fi
echo "test.sh: all tests passed"
