#!/usr/bin/env bash
# The device bundle checked on this machine (no GPU needed; CI runs it through
# scripts/device_bundle.sh --self-test): the run script resolves the CUDA libraries to this
# build's own CUDA toolkit and, with the toolkit out of the way, to a Python nvidia-* package
# layout; a library found nowhere is named with exit 3; the bundle's own libraries win over the
# system's; the binaries start; the GPU tests say "no usable GPU" and exit 77; a build from the
# bundle's tree with its vendored dependencies configures and compiles.
#   scripts/test_device_bundle.sh BUNDLE_DIR BUILD_DIR
set -euo pipefail
bundle=$(cd "$1" && pwd)
build_dir=$2
failures=0
fail() { echo "test_device_bundle: FAILED: $*" >&2; failures=$((failures + 1)); }
pass() { echo "test_device_bundle: ok: $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

sonames=$(sed -n 's/^cuda_sonames: //p' "$bundle/MANIFEST")
[ -n "$sonames" ] && pass "the binaries need $sonames from the machine" || fail "MANIFEST names no CUDA libraries"
# The folder of the cuBLASLt this build linked against.
cublaslt=$(sed -n 's/^CUDA_cublasLt_LIBRARY:FILEPATH=//p' "$build_dir/CMakeCache.txt")
[ -n "$cublaslt" ] && [ -f "$cublaslt" ] || { fail "no CUDA_cublasLt_LIBRARY in $build_dir/CMakeCache.txt"; exit 1; }
toolkit_lib=$(dirname "$cublaslt")

# 1. The defaults find this build's toolkit.
out=$("$bundle/run.sh" --check-libs 2>&1) || fail "run.sh --check-libs exited $?: $out"
for so in $sonames; do
  dir=$(sed -n "s|^run.sh: $so: ||p" <<<"$out")
  if [ -n "$dir" ] && [ "$(realpath "$dir/$so")" = "$(realpath "$toolkit_lib/$so")" ]; then
    pass "$so resolves to the build's CUDA toolkit ($dir)"
  else
    fail "$so resolved to '$dir', not to the toolkit's $toolkit_lib: $out"
  fi
done

# 2. No toolkit: the Python packages' layout, found through python3 (CUDA 13 wheels:
# nvidia-cublas in nvidia/cu13/lib, nvidia-nccl-cu13 in nvidia/nccl/lib).
mkdir -p "$tmp/site/nvidia/cu13/lib" "$tmp/site/nvidia/nccl/lib" "$tmp/bin"
for so in $sonames; do
  case "$so" in libnccl*) pkg=nccl ;; *) pkg=cu13 ;; esac
  ln -s "$(realpath "$toolkit_lib/$so")" "$tmp/site/nvidia/$pkg/lib/$so"
done
printf '#!/bin/sh\necho %s\n' "$tmp/site" >"$tmp/bin/python3"
chmod +x "$tmp/bin/python3"
out=$(PATH="$tmp/bin:$PATH" PGOLF_CUDA_ROOTS="$tmp/no-cuda" "$bundle/run.sh" --check-libs 2>&1) ||
  fail "run.sh --check-libs with the Python layout exited $?: $out"
for so in $sonames; do
  grep -q "^run.sh: $so: $tmp/site/nvidia/[a-z0-9]*/lib$" <<<"$out" && pass "$so resolves to the nvidia-* package folder" ||
    fail "$so did not resolve to $tmp/site/nvidia/*/lib: $out"
done

# 3. Nowhere to be found: named, with where it looked, exit 3.
set +e
out=$(PGOLF_LIB_SEARCH_PATH="$tmp/empty" "$bundle/run.sh" pgolf --version 2>&1)
rc=$?
set -e
first=${sonames%% *}
[ "$rc" = 3 ] && grep -q "$first: not found; looked in: $tmp/empty (PGOLF_LIB_SEARCH_PATH)$" <<<"$out" &&
  pass "a missing $first is named (exit 3)" ||
  fail "missing libraries: exit $rc: $out"

# 4. The bundle's libraries are the ones loaded.
# (Unpacked outside the bundle, which keeps its size: it must still travel after this test.)
env_lines=$("$bundle/run.sh" --print-env 2>/dev/null)
libdir=$(eval "$env_lines"; echo "${LD_LIBRARY_PATH%%:*}")
lib=$(ls "$libdir" 2>/dev/null | grep -m1 sentencepiece || true)
[ ! -e "$bundle/lib" ] && [ "${libdir#"$bundle"}" = "$libdir" ] && pass "the libraries unpack outside the bundle ($libdir)" ||
  fail "the libraries unpacked into the bundle ($libdir)"
if [ -n "$lib" ]; then
  loaded=$(eval "$env_lines"; ldd "$bundle/bin/pgolf" | awk -v n="$lib" '$1 == n { print $3 }')
  [ "$loaded" = "$libdir/$lib" ] && pass "$lib loads from the bundle's libraries (unpacked from lib.tar.xz)" || fail "$lib loads from '$loaded'"
else
  fail "the bundle carries no SentencePiece library"
fi

# 5. The binaries start; the GPU tests refuse clearly without a GPU.
out=$("$bundle/run.sh" pgolf --version 2>&1) && grep -q "gpu: none usable" <<<"$out" &&
  pass "pgolf --version runs from the bundle and says no GPU is usable" || fail "pgolf --version: $out"
for t in pgolf_gpu_kernel_tests pgolf_gpu_tests; do
  set +e
  out=$("$bundle/run.sh" "$t" 2>&1)
  rc=$?
  set -e
  [ "$rc" = 77 ] && grep -q "no usable GPU" <<<"$out" && pass "$t exits 77: no usable GPU" || fail "$t: exit $rc: $out"
done

# 6. Building on the target (run.sh --build): the vendored dependencies configure
# (cmake/VendoredDeps.cmake) and the files that include each dependency's headers compile
# against vendor/include (a full vendored build is what run.sh --build does on the target).
objects="CMakeFiles/pgolf_core.dir/src/data/tokenizer.cpp.o CMakeFiles/pgolf_core.dir/src/common/xz_reader.cpp.o
  CMakeFiles/pgolf_artifact.dir/src/export/artifact.cpp.o CMakeFiles/pgolf_cpu_ops.dir/src/backend/cpu/cpu_ops.cpp.o
  CMakeFiles/pgolf_cli.dir/src/cli/main.cpp.o tests/CMakeFiles/pgolf_tests.dir/common/test_strings.cpp.o"
if cmake -S "$bundle/tree" -B "$tmp/vendored" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPGOLF_CUDA=OFF \
     -DPGOLF_VENDOR_DIR="$bundle/vendor" -DPGOLF_VENDOR_SHARED_DIR="$libdir" >"$tmp/vendored.log" 2>&1 &&
   ninja -C "$tmp/vendored" $objects >>"$tmp/vendored.log" 2>&1; then
  uses=$(grep -c -- "-isystem $bundle/vendor/include" "$tmp/vendored/compile_commands.json" || true)
  [ "$uses" -gt 0 ] && pass "a vendored build configures and compiles the users of every dependency ($uses compile commands use vendor/include)" ||
    fail "the vendored build does not use $bundle/vendor/include"
else
  fail "the vendored build: $(tail -20 "$tmp/vendored.log")"
fi

if [ "$failures" -gt 0 ]; then
  echo "test_device_bundle: $failures check(s) failed" >&2
  exit 1
fi
echo "test_device_bundle: all checks passed"
