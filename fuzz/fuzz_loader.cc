// libFuzzer harness of the model loader: bytes -> bmx::validate_model, bmx::Model and, for a
// model that loads and is cheap enough, one predict() on zero images (so the planner and
// every op kernel are fuzzed too). Built by fuzz/CMakeLists.txt (-DBMX_BUILD_FUZZERS=ON
// with clang) and run by `make fuzz` (scripts/fuzz.sh). See fuzz/README.md.
#include <cstdio>
#include <cstdlib>

#include "loader_target.h"

namespace {

long long g_counts[3] = {0, 0, 0};

void report() {
  std::fprintf(stderr, "bmx fuzz: outcomes: %lld rejected with bmx::Error, %lld loaded (predict skipped: "
               "above the cost bound), %lld loaded and ran predict\n",
               g_counts[0], g_counts[1], g_counts[2]);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::atexit(report);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ++g_counts[bmx::fuzz::run_one(data, size)];
  return 0;
}
