#!/usr/bin/env bash
# Installs pgolf's Debian 12 dependencies (idempotent), then configures and builds.
#
#   scripts/setup.sh              install + configure + build (Release, build/)
#   scripts/setup.sh --deps-only  install only
#   scripts/setup.sh --no-deps    configure + build only (dependencies already present)
#
# Environment: BUILD_DIR (default build), BUILD_TYPE (default Release),
#              PGOLF_CUDA (AUTO|ON|OFF, default AUTO), CMAKE_ARGS (extra arguments).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps=1
build=1
for arg in "$@"; do
  case "$arg" in
    --deps-only) build=0 ;;
    --no-deps) deps=0 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

packages=(
  cmake ninja-build g++ make pkg-config git xz-utils
  clang libclang-rt-14-dev            # libFuzzer targets
  libcli11-dev nlohmann-json3-dev     # CLI and configs
  liblzma-dev libbrotli-dev           # artifact compression
  libsentencepiece-dev                # tokenizers
  libopenblas-openmp-dev              # CPU backend matrix products (OpenMP build)
  libopenmpi-dev openmpi-bin          # multi-rank runs
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-sentencepiece       # helper scripts only
)

if [ "$deps" = 1 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "setup.sh: all Debian dependencies already installed"
  fi
fi

if [ "$build" = 1 ]; then
  build_dir=${BUILD_DIR:-build}
  cd "$here"
  cmake -S . -B "$build_dir" -G Ninja \
    -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
    -DPGOLF_CUDA="${PGOLF_CUDA:-AUTO}" ${CMAKE_ARGS:-}
  cmake --build "$build_dir"
fi
