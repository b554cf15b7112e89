#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the C++ tests and of the Python
# extension, then the C++ tests and the Python engine tests against it.
# BMX_ASAN_QUICK=1 (CI) runs a bounded subset of the Python tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
SAN=address,undefined
bdir=build/asan
echo "== [asan] C++ tests ($bdir)"
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBMX_BUILD_TESTS=ON \
  -DBMX_BUILD_EXAMPLES=OFF -DBMX_SANITIZE=$SAN >/dev/null
cmake --build "$bdir" -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$bdir" && ctest --output-on-failure -j "$(nproc)")

echo "== [asan] Python engine tests against a sanitized bmx._engine"
stage=build/asan-py
rm -rf "$stage" && mkdir -p "$stage"
cp -r bmx "$stage/bmx"
rm -f "$stage"/bmx/_engine*.so
cmake -S . -B build/asan-ext -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBMX_BUILD_PYTHON=ON \
  -DBMX_BUILD_TESTS=OFF -DBMX_BUILD_EXAMPLES=OFF -DBMX_SANITIZE=$SAN \
  -DPython_EXECUTABLE="$ROOT/.venv/bin/python" \
  -Dpybind11_DIR="$(.venv/bin/python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DBMX_PYTHON_OUT="$ROOT/$stage/bmx" >/dev/null
cmake --build build/asan-ext --target _engine -j "$(nproc)"
# Python itself is not instrumented: preload the runtimes, ignore CPython's own leaks;
# -P keeps the working directory (with the regular build in bmx/) off sys.path.
LIBASAN=$(g++ -print-file-name=libasan.so)
LIBUBSAN=$(g++ -print-file-name=libubsan.so)
tests=(tests/test_convention.py tests/test_kernels.py tests/test_engine_model.py tests/test_bad_inputs.py
       tests/test_concurrency.py)
existing=()
for t in "${tests[@]}"; do [ -f "$t" ] && existing+=("$t"); done
marker=()
[ "${BMX_ASAN_QUICK:-0}" = "1" ] && marker=(-m "not slow")
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 LD_PRELOAD="$LIBASAN $LIBUBSAN" \
  PYTHONPATH="$ROOT/$stage" BMX_EXPECT_ENGINE_DIR="$ROOT/$stage/bmx" \
  .venv/bin/python -P -m pytest -q -p no:cacheprovider "${marker[@]}" "${existing[@]}"
echo "== test-asan passed"
