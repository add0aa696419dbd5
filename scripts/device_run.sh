#!/usr/bin/env bash
# The device bundle's run script (scripts/device_bundle.sh copies it to BUNDLE/run.sh): runs a
# command with the bundle's binaries on PATH and the libraries they need on LD_LIBRARY_PATH.
#
#   BUNDLE/run.sh COMMAND [ARGS...]   e.g. BUNDLE/run.sh pgolf --version
#   BUNDLE/run.sh --check-libs        resolve and check the libraries only; print where each came from
#   BUNDLE/run.sh --print-env         print the export lines (for `eval "$(BUNDLE/run.sh --print-env)"`)
#   BUNDLE/run.sh --build             where the carried binaries cannot run: build them here from
#                                     tree/ with the bundle's vendored dependencies (needs the CUDA
#                                     toolkit, CMake >= 3.25, Ninja, g++; PGOLF_BUILD_DIR, default
#                                     under TMPDIR) and use those instead
#
# The CUDA libraries the binaries need (MANIFEST's cuda_sonames: cuBLASLt, NCCL) come from this
# machine. They are looked for, in order, in $PGOLF_LIB_SEARCH_PATH (a colon-separated list that
# replaces the defaults), else: the CUDA roots ($CUDA_HOME, $CUDA_PATH, the nvcc on PATH,
# /usr/local/cuda and /usr/local/cuda-*, or the colon-separated $PGOLF_CUDA_ROOTS instead; each
# root's lib64, lib, targets/x86_64-linux/lib), every Python's nvidia-* package folders
# (site-packages/nvidia/*/lib, nvidia/cu*/lib), and the loader's cache (ldconfig -p).
# A library found nowhere, or a symbol version this machine lacks (GLIBC_x: the machine's C
# library is older than the build machine's), is named with where it was looked for, exit 3.
# pgolf's data paths: PGOLF_SOURCE_DIR is set to the bundle's tree/ (code accounting, the
# default config) and PGOLF_TEST_SOURCE_DIR too (the GPU tests' configs and goldens).
set -euo pipefail
bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=run
case "${1:-}" in
  --check-libs) mode=check; shift ;;
  --print-env) mode=env; shift ;;
  --build) mode=build; shift ;;
  -h|--help|"") sed -n '2,22p' "${BASH_SOURCE[0]}"; [ -n "${1:-}" ] && exit 0; exit 2 ;;
esac
say() { [ "$mode" = env ] && echo "# $*" >&2 || echo "run.sh: $*" >&2; }

sonames=$(sed -n 's/^cuda_sonames: //p' "$bundle/MANIFEST")

# The carried libraries, unpacked on first use into a temporary folder named after the bundle
# (never into the bundle, which must stay small enough to travel).
scratch="${TMPDIR:-/tmp}/pgolf-bundle-$(cat "$bundle/MANIFEST" "$bundle/lib.tar.xz" | cksum | cut -d' ' -f1)"
libdir="$scratch/lib"
if [ ! -d "$libdir" ]; then
  rm -rf "$libdir.partial"
  mkdir -p "$libdir.partial"
  if command -v xz >/dev/null 2>&1; then
    tar -xJf "$bundle/lib.tar.xz" -C "$libdir.partial"
  else
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle/lib.tar.xz" "$libdir.partial"
  fi
  mv "$libdir.partial/lib" "$libdir" && rmdir "$libdir.partial"
fi

candidate_dirs() {
  if [ -n "${PGOLF_LIB_SEARCH_PATH:-}" ]; then
    tr ':' '\n' <<<"$PGOLF_LIB_SEARCH_PATH"
    return
  fi
  local roots=()
  if [ -n "${PGOLF_CUDA_ROOTS+set}" ]; then
    IFS=: read -r -a roots <<<"$PGOLF_CUDA_ROOTS"
  else
    [ -n "${CUDA_HOME:-}" ] && roots+=("$CUDA_HOME")
    [ -n "${CUDA_PATH:-}" ] && roots+=("$CUDA_PATH")
    if command -v nvcc >/dev/null 2>&1; then roots+=("$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)"); fi
    roots+=(/usr/local/cuda /usr/local/cuda-*)
  fi
  local r
  shopt -s nullglob
  for r in "${roots[@]}"; do
    [ -d "$r" ] && printf '%s\n' "$r/lib64" "$r/lib" "$r/targets/x86_64-linux/lib"
  done
  local sites=() py
  for py in python3 /opt/*/.venv/bin/python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    while IFS= read -r s; do sites+=("$s"); done < <("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true)
  done
  sites+=(/usr/local/lib/python3*/dist-packages /usr/lib/python3/dist-packages /opt/*/.venv/lib/python3*/site-packages)
  for s in "${sites[@]}"; do
    [ -d "$s/nvidia" ] || continue
    printf '%s\n' "$s"/nvidia/*/lib "$s"/nvidia/cu*/lib
  done
}

# The first candidate folder holding `soname`, else the loader cache's path, else nothing.
find_library() {
  local d
  while IFS= read -r d; do
    [ -n "$d" ] && [ -e "$d/$1" ] && { echo "$d"; return; }
  done < <(candidate_dirs | awk '!seen[$0]++')
  if [ -z "${PGOLF_LIB_SEARCH_PATH:-}" ] && command -v ldconfig >/dev/null 2>&1; then
    local p
    p=$(ldconfig -p 2>/dev/null | awk -v n="$1" '$1 == n { print $NF; exit }')
    [ -n "$p" ] && { dirname "$p"; return; }
  fi
  return 0
}

path="$libdir"
missing=0
for so in $sonames; do
  dir=$(find_library "$so")
  if [ -z "$dir" ]; then
    if [ -n "${PGOLF_LIB_SEARCH_PATH:-}" ]; then where="(PGOLF_LIB_SEARCH_PATH)"; else where="and the loader cache"; fi
    say "$so: not found; looked in: $(candidate_dirs | awk '!seen[$0]++' | tr '\n' ' ')$where"
    missing=1
    continue
  fi
  [ "$mode" = check ] && say "$so: $dir"
  case ":$path:" in *":$dir:"*) ;; *) path="$path:$dir" ;; esac
done
if [ "$missing" = 1 ]; then
  say "install the CUDA 13 libraries (toolkit, or pip's nvidia-cublas and nvidia-nccl-cu13), or name their folders in PGOLF_LIB_SEARCH_PATH"
  exit 3
fi

# Building here: tree/ with vendor/ and lib/, NCCL's header next to the libnccl found above.
if [ "$mode" = build ]; then
  nccl_dir=$(find_library libnccl.so.2)
  [ -n "$nccl_dir" ] || { say "libnccl.so.2 not found: NCCL is needed to build (pip's nvidia-nccl-cu13 or the toolkit's)"; exit 3; }
  nccl_include=""
  for d in "$nccl_dir/../include" "$nccl_dir/../../include"; do [ -f "$d/nccl.h" ] && nccl_include=$(cd "$d" && pwd) && break; done
  [ -n "$nccl_include" ] || { say "no nccl.h beside $nccl_dir/libnccl.so.2"; exit 3; }
  build_dir="${PGOLF_BUILD_DIR:-$scratch/build}"
  say "building pgolf and the GPU tests in $build_dir (NCCL from $nccl_dir)"
  # Warnings are not errors here: the target's compilers may warn where the build machine's did not.
  export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cmake -S "$bundle/tree" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPGOLF_CUDA=ON -DPGOLF_WERROR=OFF \
    -DPGOLF_VENDOR_DIR="$bundle/vendor" -DPGOLF_VENDOR_SHARED_DIR="$libdir" \
    -DPGOLF_NCCL_LIBRARY="$nccl_dir/libnccl.so.2" -DPGOLF_NCCL_INCLUDE="$nccl_include" >&2
  cmake --build "$build_dir" --target pgolf pgolf_gpu_tests pgolf_gpu_kernel_tests >&2
  for b in pgolf tests/pgolf_gpu_tests tests/pgolf_gpu_kernel_tests; do cp "$build_dir/$b" "$bundle/bin/"; done
  say "built here; bin/ now holds this machine's binaries"
  mode=check
fi

# What the loader says about each binary with that path; libstdc++/libgcc_s from the bundle
# only where the machine's lack a version the binaries need.
check_binaries() {
  local b out
  for b in "$bundle"/bin/*; do
    out=$(LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$b" 2>&1 || true)
    grep -E "not found|version .* not found" <<<"$out" | sed "s|^|$(basename "$b"): |" || true
  done
}
problems=$(check_binaries "$path")
if grep -qE "GLIBCXX_|CXXABI_|GCC_|GOMP_|libstdc\+\+|libgcc_s|libgomp" <<<"$problems"; then
  [ "$mode" = check ] && say "this machine's libstdc++/libgcc_s/libgomp are missing or older than the build machine's: using the bundle's ($libdir/compat)"
  path="$path:$libdir/compat"
  problems=$(check_binaries "$path")
fi
if [ -n "$problems" ]; then
  say "the carried binaries cannot run here:"
  sed 's/^/  /' <<<"$problems" >&2
  if grep -q "GLIBC_" <<<"$problems"; then
    say "this machine's C library is older than the build machine's ($(ldd --version 2>&1 | head -1)); build pgolf here instead (docs/gpu.md)"
  fi
  exit 3
fi
[ "$mode" = check ] && say "every library resolves for $(cd "$bundle/bin" && ls | tr '\n' ' ')"

export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$bundle/bin:$PATH"
export PGOLF_SOURCE_DIR="${PGOLF_SOURCE_DIR:-$bundle/tree}"
export PGOLF_TEST_SOURCE_DIR="${PGOLF_TEST_SOURCE_DIR:-$bundle/tree}"
export PGOLF_TEST_BINARY="${PGOLF_TEST_BINARY:-$bundle/bin/pgolf}"
case "$mode" in
  check) exit 0 ;;
  env)
    for v in LD_LIBRARY_PATH PATH PGOLF_SOURCE_DIR PGOLF_TEST_SOURCE_DIR PGOLF_TEST_BINARY; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done ;;
  run) exec "$@" ;;
esac
