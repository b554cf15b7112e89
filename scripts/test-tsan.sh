#!/usr/bin/env bash
# ThreadSanitizer build of the C++ tests (thread pool, threaded kernels, concurrent model
# use), then all of them. Built with Clang: GCC's TSan runtime crashes at start-up on the
# IFUNC resolvers that target_clones (BMX_SIMD_CLONES) creates, which Clang builds
# without. Installs clang from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang++ >/dev/null; then
  echo "[tsan] installing clang"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang
fi
bdir=build/tsan
echo "== [tsan] C++ tests ($bdir, clang)"
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBMX_BUILD_TESTS=ON -DBMX_BUILD_EXAMPLES=OFF \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DBMX_SANITIZE=thread >/dev/null
cmake --build "$bdir" -j "$(nproc)"
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
(cd "$bdir" && ctest --output-on-failure -j "$(nproc)")
echo "== test-tsan passed"
