#!/usr/bin/env bash
# Builds pgolf for a real GPU on this machine and packs everything the device check needs into
# one folder, for a CUDA machine that has the NVIDIA driver and CUDA libraries but none of
# pgolf's Debian packages (docs/gpu.md):
#
#   bin/    pgolf, pgolf_gpu_tests, pgolf_gpu_kernel_tests (Release, sm_90a, stripped)
#   lib.tar.xz  every shared library they need that is not glibc or CUDA's (ldd: SentencePiece,
#           OpenBLAS, libgomp, lzma, brotli, protobuf...), unpacked by run.sh into lib/;
#           lib/compat/ holds libstdc++ and libgcc_s, used only where the machine's are too old
#   tree/   the source tree as it is now (tracked and untracked-but-not-ignored files: configs,
#           bundled data, tests/reference, the sources that code accounting counts)
#   vendor/ the dependencies' headers and GoogleTest, for `run.sh --build` on the target
#   run.sh  finds the CUDA libraries there (CUDA toolkit folders, the Python nvidia-* packages),
#           sets LD_LIBRARY_PATH, says what is missing, and runs a command
#   MANIFEST  what was built, from which commit, and the CUDA libraries the binaries need
#
#   scripts/device_bundle.sh              build (BUILD_DIR, default build) and pack
#   scripts/device_bundle.sh --no-build   pack what BUILD_DIR holds
#   scripts/device_bundle.sh --self-test  then check the bundle here (CI): library resolution
#                                         against this build's CUDA toolkit and against a
#                                         Python-package layout, a missing library named, the
#                                         binaries starting, the GPU tests saying "no usable GPU"
# Environment: BUILD_DIR (default build), BUNDLE_DIR (default .device-bundle), BUNDLE_MAX_MIB (60).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build=1
self_test=0
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --self-test) self_test=1 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "device_bundle.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
build_dir=${BUILD_DIR:-build}
bundle=${BUNDLE_DIR:-.device-bundle}
max_mib=${BUNDLE_MAX_MIB:-60}
binaries=(pgolf tests/pgolf_gpu_tests tests/pgolf_gpu_kernel_tests)

if [ "$build" = 1 ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPGOLF_CUDA=ON >/dev/null
  cmake --build "$build_dir" --target pgolf pgolf_gpu_tests pgolf_gpu_kernel_tests
fi
grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' "$build_dir/CMakeCache.txt" ||
  { echo "device_bundle.sh: $build_dir is not a Release build" >&2; exit 1; }
for b in "${binaries[@]}"; do
  [ -x "$build_dir/$b" ] || { echo "device_bundle.sh: $build_dir/$b is missing (a CUDA build: PGOLF_CUDA=ON)" >&2; exit 1; }
done

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib/compat" "$bundle/tree"
for b in "${binaries[@]}"; do
  cp "$build_dir/$b" "$bundle/bin/"
  strip --strip-unneeded "$bundle/bin/$(basename "$b")"
done

# Which libraries travel. glibc's own must match the machine's loader, and the CUDA libraries
# must match its driver: both are the machine's. libstdc++ and libgcc_s travel as a fallback.
is_machines() {
  case "$1" in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libutil.so*|libresolv.so*) return 0 ;;
    libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnccl.so*|libnvidia-*|libnvJitLink.so*|libnvrtc.so*) return 0 ;;
  esac
  return 1
}
is_cuda() {
  case "$1" in libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libnccl.so*|libnvJitLink.so*|libnvrtc.so*) return 0 ;; esac
  return 1
}
cuda_sonames=()
for b in "${binaries[@]}"; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if is_cuda "$name"; then
      [[ " ${cuda_sonames[*]-} " == *" $name "* ]] || cuda_sonames+=("$name")
    elif ! is_machines "$name"; then
      [ -f "$path" ] || { echo "device_bundle.sh: $b needs $name, not found here" >&2; exit 1; }
      case "$name" in
        libstdc++.so*|libgcc_s.so*) cp -L "$path" "$bundle/lib/compat/$name" ;;
        *) cp -L "$path" "$bundle/lib/$name" ;;
      esac
    fi
  done < <(ldd "$build_dir/$b")
done
# libcuda (the driver) is loaded by the static CUDA runtime at run time, never linked: it is
# the machine's and not looked for.

# The source tree as it is now, the files git would carry.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  mkdir -p "$bundle/tree/$(dirname "$f")"
  cp -p "$f" "$bundle/tree/$f"
done

# libgomp travels as a fallback too: a binary built on the target with a newer g++ needs the
# target's (and OpenBLAS is content with either).
[ -f "$bundle/lib/libgomp.so.1" ] && mv "$bundle/lib/libgomp.so.1" "$bundle/lib/compat/"

# For building on the target (run.sh --build, cmake/VendoredDeps.cmake): the headers of every
# dependency, GoogleTest's static libraries and the versions; the shared libraries are lib/'s.
vendor="$bundle/vendor"
mkdir -p "$vendor/include" "$vendor/lib"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for h in /usr/include/CLI /usr/include/nlohmann /usr/include/gtest /usr/include/brotli /usr/include/lzma \
         /usr/include/lzma.h /usr/include/sentencepiece_processor.h /usr/include/sentencepiece_trainer.h \
         "/usr/include/$multiarch/openblas-openmp/cblas.h" "/usr/include/$multiarch/openblas-openmp/openblas_config.h"; do
  [ -e "$h" ] || { echo "device_bundle.sh: $h is missing (scripts/setup.sh installs it)" >&2; exit 1; }
  cp -rL "$h" "$vendor/include/"
done
for a in libgtest.a libgtest_main.a; do cp "/usr/lib/$multiarch/$a" "$vendor/lib/"; done
{
  echo "# Written by scripts/device_bundle.sh: the build machine's package versions."
  echo "set(SENTENCEPIECE_VERSION \"$(pkg-config --modversion sentencepiece)\")"
  echo "set(LZMA_VERSION \"$(pkg-config --modversion liblzma)\")"
  echo "set(BROTLI_libbrotlienc_VERSION \"$(pkg-config --modversion libbrotlienc)\")"
} >"$vendor/versions.cmake"
git describe --always --dirty --abbrev=12 >"$bundle/tree/GIT_HASH" 2>/dev/null || true

# The libraries travel compressed (OpenBLAS alone is 36 MB, 7 MB as xz): run.sh unpacks them
# on first use.
(cd "$bundle" && XZ_OPT="-6 -T0" tar -cJf lib.tar.xz lib && rm -rf lib)

cp scripts/device_run.sh "$bundle/run.sh"
chmod +x "$bundle/run.sh"
{
  echo "pgolf device bundle"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  "$build_dir/pgolf" --version | sed -n '1,3p'
  echo "cuda_sonames: ${cuda_sonames[*]}"
  echo "binaries: ${binaries[*]##*/}"
  echo "carried_libraries: $(tar -tJf "$bundle/lib.tar.xz" | sed -n 's|^lib/\(compat/\)\{0,1\}\([^/][^/]*\)$|\1\2|p' | tr '\n' ' ')"
} >"$bundle/MANIFEST"

bytes=$(du -sb "$bundle" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
echo "device_bundle.sh: $bundle is $bytes bytes ($mib MiB): $(du -sh "$bundle/bin" | cut -f1) binaries, $(du -sh "$bundle/lib.tar.xz" | cut -f1) libraries (xz), $(du -sh "$bundle/tree" | cut -f1) source tree"
echo "device_bundle.sh: needs from the machine: ${cuda_sonames[*]} (and the NVIDIA driver, libcuda.so.1)"
if [ "$mib" -gt "$max_mib" ]; then
  echo "device_bundle.sh: the bundle exceeds $max_mib MiB" >&2
  exit 1
fi

if [ "$self_test" = 1 ]; then
  scripts/test_device_bundle.sh "$bundle" "$build_dir"
fi
