#!/usr/bin/env bash
# Fuzz the model loader with libFuzzer (+ ASan + UBSan) for a bounded time: `make fuzz`.
#
#   FUZZ_SECONDS  time budget in seconds (default 120)
#   FUZZ_JOBS     parallel fuzzing processes (default 1; each gets FUZZ_SECONDS)
#   FUZZ_ARGS     extra libFuzzer flags, e.g. "-runs=1000000"
#   FUZZ_FULL=1   also seed with MiB-sized zoo models (binarydensenet28, ...) at 32x32
#
# Builds build/fuzz/fuzz/bmx_fuzz_loader with clang (installing clang, libFuzzer and the
# compiler-rt sanitizer runtimes from Debian when missing), regenerates the seed corpus
# (fuzz/make_corpus.py: converted zoo models + hand-mutated files) into build/fuzz/seeds,
# keeps the growing corpus in build/fuzz/corpus, and writes any crashing input to
# build/fuzz/artifacts/ (then exits non-zero: turn it into a regression test, see
# fuzz/README.md). Prints the execution count and the time taken.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
FUZZ_SECONDS=${FUZZ_SECONDS:-120}
FUZZ_JOBS=${FUZZ_JOBS:-1}
FUZZ_ARGS=${FUZZ_ARGS:-}
JOBS=${JOBS:-2}

DEB_PKGS=(clang libclang-rt-14-dev libfuzzer-14-dev)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[fuzz] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
CXX_BIN=$(command -v clang++-14 || command -v clang++)
CC_BIN=$(command -v clang-14 || command -v clang)

bdir=build/fuzz
echo "== [fuzz] building the harness ($bdir, $(basename "$CXX_BIN"), ASan+UBSan+libFuzzer)"
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DBMX_BUILD_FUZZERS=ON -DBMX_BUILD_TESTS=OFF -DBMX_BUILD_EXAMPLES=OFF \
  -DBMX_SANITIZE=address,undefined >/dev/null
cmake --build "$bdir" --target bmx_fuzz_loader -j "$JOBS"
fuzzer="$bdir/fuzz/bmx_fuzz_loader"

echo "== [fuzz] seed corpus (fuzz/make_corpus.py)"
seeds="$bdir/seeds"
rm -rf "$seeds"
full=()
[ "${FUZZ_FULL:-0}" = "1" ] && full=(--full)
OMP_NUM_THREADS=1 .venv/bin/python fuzz/make_corpus.py "$seeds" "${full[@]}"
# Past inputs that once crashed the loader are seeds too.
cp tests/data/fuzz-regressions/*.bmx "$seeds"/ 2>/dev/null || true
corpus="$ROOT/$bdir/corpus"
artifacts="$ROOT/$bdir/artifacts"
rm -rf "$artifacts"
mkdir -p "$corpus" "$artifacts"
largest=$(find "$seeds" -type f -printf '%s\n' | sort -n | tail -1)
max_len=$(( largest + 4096 ))

echo "== [fuzz] running for ${FUZZ_SECONDS}s x ${FUZZ_JOBS} job(s), -max_len=$max_len"
log="$ROOT/$bdir/fuzz.log"
rm -f "$bdir"/fuzz-*.log
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
start=$(date +%s.%N)
rc=0
args=(-max_total_time="$FUZZ_SECONDS" -max_len="$max_len" -dict="$ROOT/fuzz/bmx.dict"
      -artifact_prefix="$artifacts/" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
      -use_value_profile=1)
if [ "$FUZZ_JOBS" -gt 1 ]; then
  # -jobs writes one log per job into the working directory (fuzz-<n>.log).
  (cd "$bdir" && "$ROOT/$fuzzer" "${args[@]}" -jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS" \
     $FUZZ_ARGS "$corpus" "$ROOT/$seeds") >"$log" 2>&1 || rc=$?
  cat "$bdir"/fuzz-*.log >>"$log" 2>/dev/null || true
else
  "$fuzzer" "${args[@]}" $FUZZ_ARGS "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
fi
end=$(date +%s.%N)
runs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')
if [ "$rc" -ne 0 ]; then tail -n 80 "$log"; fi
grep -hE "^Done|stat::|bmx fuzz: outcomes" "$log" || true
echo "== [fuzz] $runs loader executions in ${secs}s ($(awk -v r="$runs" -v s="$secs" 'BEGIN {printf "%.0f", r / s}')/s);" \
  "corpus $(ls "$corpus" | wc -l) files; log $log"
if [ "$rc" -ne 0 ] || ls "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-* >/dev/null 2>&1; then
  echo "== [fuzz] FAILED (rc=$rc): crashing inputs in $artifacts/; add them to tests/data/fuzz-regressions/" >&2
  ls -l "$artifacts" >&2
  exit 1
fi
echo "== [fuzz] no crash"
