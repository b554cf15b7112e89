// libFuzzer harness of the model loader: bytes -> bmx::validate_model, bmx::Model and, for a
// model that loads and is cheap enough, one predict() on a zero image (so the planner and
// every op kernel are fuzzed too). Built by fuzz/CMakeLists.txt (-DBMX_BUILD_FUZZERS=ON
// with clang) and run by `make fuzz` (scripts/fuzz.sh). See fuzz/README.md.
#include "loader_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bmx::fuzz::run_one(data, size);
  return 0;
}
