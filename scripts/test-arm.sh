#!/usr/bin/env bash
# Cross-build the C++ engine, its tests and the C++ example for aarch64 and armhf
# (NEON), and run them under qemu-user. Usage: scripts/test-arm.sh [aarch64|armhf ...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 armhf)

need=(g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user googletest flatbuffers-compiler libflatbuffers-dev)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[arm] installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
CMAKE=cmake; [ -x .venv/bin/cmake ] && CMAKE=.venv/bin/cmake
GEN=(); command -v ninja >/dev/null || [ -x .venv/bin/ninja ] && GEN=(-G Ninja)
export PATH="$ROOT/.venv/bin:$PATH"

for t in "${targets[@]}"; do
  case "$t" in
    aarch64) tc=cmake/toolchains/aarch64-linux-gnu.cmake; emu=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
    armhf)   tc=cmake/toolchains/arm-linux-gnueabihf.cmake; emu=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
    *) echo "unknown target $t (aarch64|armhf)" >&2; exit 2 ;;
  esac
  bdir=build/arm-$t
  echo "== [$t] configure + build ($bdir)"
  # FlatBuffers is header-only: expose only its headers (not the host's /usr/include).
  mkdir -p "$bdir/fbinc"
  ln -sfn /usr/include/flatbuffers "$bdir/fbinc/flatbuffers"
  "$CMAKE" -S . -B "$bdir" "${GEN[@]}" -DCMAKE_TOOLCHAIN_FILE="$ROOT/$tc" \
    -DCMAKE_BUILD_TYPE=Release -DBMX_BUILD_TESTS=ON -DBMX_BUILD_EXAMPLES=ON -DBMX_USE_BLAS=OFF \
    -DBMX_FLATBUFFERS_INCLUDE_DIR="$ROOT/$bdir/fbinc" >/dev/null
  "$CMAKE" --build "$bdir" -j "$(nproc)"
  echo "== [$t] kernel and runtime tests under ${emu[0]}"
  "${emu[@]}" "$bdir/tests/cpp/bmx_tests" --gtest_brief=1
  if [ -x scripts/arm-e2e.sh ]; then
    bash scripts/arm-e2e.sh "$t" "$bdir" "${emu[@]}"
  fi
done
echo "== test-arm: all targets passed"
