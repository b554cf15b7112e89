// Every input the model-loader fuzzer (fuzz/) ever flagged, replayed through the same
// harness body (fuzz/loader_target.h): the files of tests/data/fuzz-regressions/ and the
// small hand-made cases below. Each must load-and-run or fail with a bmx::Error; the
// harness aborts on anything else, and under `make test-asan` any memory error or UB
// aborts too.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
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
  EXPECT_EQ(bmx::fuzz::run_one(b.data(), b.size()), bmx::fuzz::kRan);
}

TEST(LoaderRegressions, EmptyAndTinyInputs) {
  EXPECT_EQ(bmx::fuzz::run_one(nullptr, 0), bmx::fuzz::kRejected);
  const std::uint8_t ident[] = {8, 0, 0, 0, 'B', 'M', 'X', '1'};
  EXPECT_EQ(bmx::fuzz::run_one(ident, sizeof ident), bmx::fuzz::kRejected);
  const std::uint8_t ident12[] = {8, 0, 0, 0, 'B', 'M', 'X', '1', 0, 0, 0, 0};
  EXPECT_EQ(bmx::fuzz::run_one(ident12, sizeof ident12), bmx::fuzz::kRejected);
}

// ---- Loading from a path: every bad path is a bmx::Error naming it, never a hang.
namespace path_cases {

struct TempDir {
  fs::path p;
  TempDir() {
    p = fs::temp_directory_path() / ("bmx-loader-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(std::rand()));
    fs::create_directories(p);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

std::string path_error(const std::string& path) {
  try {
    Model m(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LoaderPaths, MissingDirectoryEmptyAndGarbageFiles) {
  TempDir t;
  const std::string missing = (t.p / "missing.bmx").string();
  std::string e = path_error(missing);
  EXPECT_NE(e.find(missing), std::string::npos) << e;

  e = path_error(t.p.string());
  EXPECT_NE(e, "") << "a directory loaded as a model";
  EXPECT_NE(e.find(t.p.string()), std::string::npos) << e;

  const fs::path empty = t.p / "empty.bmx";
  { std::ofstream(empty, std::ios::binary); }
  e = path_error(empty.string());
  EXPECT_NE(e.find("empty"), std::string::npos) << e;

  const fs::path text = t.p / "text.bmx";
  { std::ofstream(text, std::ios::binary) << "not a model at all, just text"; }
  e = path_error(text.string());
  EXPECT_NE(e, "");
  EXPECT_NE(e.find(text.string()), std::string::npos) << e;
}

TEST(LoaderPaths, ValidFileLoadsAndTruncatedFileFails) {
  TempDir t;
  Net n = harness_net();
  const auto b = n.build(static_cast<int>(n.vals.size()) - 1);
  const fs::path good = t.p / "good.bmx", cut = t.p / "cut.bmx";
  { std::ofstream(good, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size()); }
  { std::ofstream(cut, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size() / 2); }
  EXPECT_EQ(path_error(good.string()), "");
  EXPECT_NE(path_error(cut.string()), "");
}

// A FIFO (or any non-regular file) must be refused, not block in open() waiting for a
// writer.
TEST(LoaderPaths, FifoIsRefusedWithoutBlocking) {
  TempDir t;
  const fs::path fifo = t.p / "model.bmx";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto result = std::async(std::launch::async, [&] { return path_error(fifo.string()); });
  const bool blocked = result.wait_for(std::chrono::seconds(5)) != std::future_status::ready;
  if (blocked) {
    // Unblock the loader (open for writing, then EOF) so the test can end.
    std::ofstream unblock(fifo, std::ios::binary);
  }
  const std::string e = result.get();
  EXPECT_FALSE(blocked) << "Model(<fifo>) blocked in open()";
  EXPECT_NE(e, "");
}

}  // namespace path_cases

// ---- Graph size: the planner is quadratic in the number of values, so the loader caps
// values and ops at 16384. The largest allowed graphs must load (and run) in reasonable
// time, one more must be refused: a hostile file can't make loading hang.
namespace graph_size {

constexpr int kMaxOps = 1 << 14;

double seconds_to_load_and_run(const std::vector<std::uint8_t>& b) {
  const auto t0 = std::chrono::steady_clock::now();
  Model m = Model::from_bytes(b.data(), b.size());
  std::vector<float> x(m.input_size(), 0.5f), y(m.output_size());
  m.predict(x.data(), 1, y.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A chain: every value dies right after its use.
TEST(LoaderGraphSize, LongestChainLoads) {
  Net n;
  int x = n.input(1, 1, 1);
  for (int i = 0; i < kMaxOps - 1; ++i) x = n.relu(x);
  const auto b = n.build(x);
  EXPECT_LT(seconds_to_load_and_run(b), 60.0) << "loading a " << kMaxOps << "-op chain took too long";
  Net m;
  int y = m.input(1, 1, 1);
  for (int i = 0; i < kMaxOps; ++i) y = m.relu(y);
  const auto too_many = m.build(y);
  try {
    Model bad = Model::from_bytes(too_many.data(), too_many.size());
    FAIL() << "a model with more than " << kMaxOps << " values loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too many"), std::string::npos) << e.what();
  }
}

// Everything live at once: thousands of values that all reach the final concatenations
// (the planner's worst case: every storage overlaps every other).
TEST(LoaderGraphSize, ThousandsOfLiveValuesLoad) {
  Net n;
  const int x = n.input(2, 2, 2);
  std::vector<int> parts;
  const int per_concat = 4000, groups = 3;
  for (int g = 0; g < groups; ++g) {
    std::vector<int> in;
    for (int i = 0; i < per_concat; ++i) in.push_back(n.relu(x));
    parts.push_back(n.concat(in));
  }
  int y = n.concat(parts);
  y = n.global_pool(y, false);
  y = n.dense(y, 3);
  const auto b = n.build(y);
  EXPECT_LT(seconds_to_load_and_run(b), 60.0);
}

}  // namespace graph_size

}  // namespace
}  // namespace bmx::testing
