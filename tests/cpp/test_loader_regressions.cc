// Every input the model-loader fuzzer (fuzz/) ever flagged, replayed through the same
// harness body (fuzz/loader_target.h): the files of tests/data/fuzz-regressions/ and the
// small hand-made cases below. Each must load-and-run or fail with a bmx::Error; the
// harness aborts on anything else, and under `make test-asan` any memory error or UB
// aborts too.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/loader_target.h"
#include "test_runtime_util.h"

namespace bmx::testing {
namespace {

namespace fs = std::filesystem;

fs::path regressions_dir() {
  if (const char* env = std::getenv("BMX_FUZZ_REGRESSIONS")) return env;
  return fs::path(__FILE__).parent_path().parent_path() / "data" / "fuzz-regressions";
}

std::vector<std::uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST(LoaderRegressions, EveryStoredInputFailsCleanlyOrRuns) {
  const fs::path dir = regressions_dir();
  ASSERT_TRUE(fs::is_directory(dir)) << dir << " (set BMX_FUZZ_REGRESSIONS)";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().extension() != ".bmx") continue;
    const auto bytes = read_file(e.path());
    SCOPED_TRACE(e.path().filename().string());
    // The harness aborts on a property violation; reaching the next line is the test.
    (void)bmx::fuzz::run_one(bytes.data(), bytes.size());
    ++n;
  }
  std::printf("replayed %d stored fuzz inputs from %s\n", n, dir.c_str());
}

// A valid small model goes through the harness (so the replay above is known to reach
// predict()), and the harness's cost bound keeps big-but-valid models out of predict().
Net harness_net() {
  Net n(3);
  int x = n.input(3, 8, 8);
  x = n.conv(x, 16, 3, 1, 1, 1, 1, true);
  int s = n.sign(x, true);
  int y = n.bconv(s, 16, 3, 1, 1);
  x = n.concat({x, y});
  x = n.global_pool(x, false);
  n.dense(x, 4);
  return n;
}

TEST(LoaderRegressions, ValidModelRunsThroughHarness) {
  Net n = harness_net();
  const auto b = n.build(static_cast<int>(n.vals.size()) - 1);
  EXPECT_TRUE(bmx::fuzz::run_one(b.data(), b.size()));
}

TEST(LoaderRegressions, EmptyAndTinyInputs) {
  EXPECT_FALSE(bmx::fuzz::run_one(nullptr, 0));
  const std::uint8_t ident[] = {8, 0, 0, 0, 'B', 'M', 'X', '1'};
  EXPECT_FALSE(bmx::fuzz::run_one(ident, sizeof ident));
  const std::uint8_t ident12[] = {8, 0, 0, 0, 'B', 'M', 'X', '1', 0, 0, 0, 0};
  EXPECT_FALSE(bmx::fuzz::run_one(ident12, sizeof ident12));
}

}  // namespace
}  // namespace bmx::testing
