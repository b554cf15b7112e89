// The model-loader regression corpus, replayed through the fuzz harness body
// (fuzz/loader_target.h): the files of tests/data/fuzz-regressions/ (one per check of the
// loader, made by scripts/make_regression_corpus.py, plus any input the fuzzer flagged) and
// the small hand-made cases below. Each must load-and-run or fail with a bmx::Error; the
// harness aborts on anything else, and under `make test-asan` any memory error or UB
// aborts too. The folder's manifest.json gives each file's expected outcome: the error
// message fragment both Model::from_bytes() and validate_model() must report, or "none".
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <regex>
#include <set>
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

// Expected outcome of one corpus file: error "ModelError" (a bmx::Error whose message
// contains `message`) or "none" (the file loads).
struct Expected {
  std::string error, message;
};
struct Manifest {
  long count = -1;
  std::map<std::string, Expected> files;
};

std::string json_field(const std::string& entry, const std::string& key) {
  const std::regex re("\"" + key + "\": *\"([^\"\\\\]*)\"");
  std::smatch m;
  return std::regex_search(entry, m, re) ? m[1].str() : "<no " + key + ">";
}

// manifest.json as scripts/make_regression_corpus.py writes it: JSON with one file per line
// and strings without escapes (tests/test_loader_regressions.py keeps it in that form), so
// a line scanner reads it without a JSON library.
Manifest read_manifest(const fs::path& p) {
  Manifest man;
  std::ifstream f(p);
  const std::regex count_re(R"re(^ *"count": *([0-9]+),? *$)re");
  const std::regex entry_re(R"re(^ *"([^"]+\.bmx)": *\{(.*)\},? *$)re");
  std::string line;
  while (std::getline(f, line)) {
    std::smatch m;
    if (std::regex_match(line, m, count_re)) {
      man.count = std::stol(m[1].str());
    } else if (std::regex_match(line, m, entry_re)) {
      const std::string entry = m[2].str();
      man.files[m[1].str()] = {json_field(entry, "error"), json_field(entry, "message")};
    }
  }
  return man;
}

template <typename Load>
std::string error_of(Load&& load) {
  try {
    load();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LoaderRegressions, EveryStoredInputFailsAsTheManifestSays) {
  const fs::path dir = regressions_dir();
  ASSERT_TRUE(fs::is_directory(dir)) << dir << " (set BMX_FUZZ_REGRESSIONS)";
  const fs::path manifest_path = dir / "manifest.json";
  // A folder given by BMX_FUZZ_REGRESSIONS (e.g. fresh fuzzer finds) may have no manifest:
  // then only the harness properties are checked.
  const bool has_manifest = fs::exists(manifest_path);
  const bool committed = std::getenv("BMX_FUZZ_REGRESSIONS") == nullptr;
  if (committed) {
    ASSERT_TRUE(has_manifest) << manifest_path;
  }
  const Manifest man = has_manifest ? read_manifest(manifest_path) : Manifest{};
  if (has_manifest) {
    ASSERT_EQ(man.count, static_cast<long>(man.files.size())) << "count vs entries of " << manifest_path;
  }
  int n = 0;
  std::set<std::string> seen;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().extension() != ".bmx") continue;
    const std::string name = e.path().filename().string();
    const auto bytes = read_file(e.path());
    SCOPED_TRACE(name);
    // The harness aborts on a property violation; reaching the next line is that test.
    const auto outcome = bmx::fuzz::run_one(bytes.data(), bytes.size());
    ++n;
    seen.insert(name);
    if (!has_manifest) continue;
    const auto it = man.files.find(name);
    if (it == man.files.end()) {
      ADD_FAILURE() << name << " has no entry in " << manifest_path;
      continue;
    }
    const Expected& want = it->second;
    if (want.error == "none") {
      EXPECT_NE(outcome, bmx::fuzz::kRejected) << "must load";
      continue;
    }
    EXPECT_EQ(want.error, "ModelError");
    EXPECT_EQ(outcome, bmx::fuzz::kRejected);
    const std::string load = error_of([&] { (void)Model::from_bytes(bytes.data(), bytes.size()); });
    const std::string check = error_of([&] { validate_model(bytes.data(), bytes.size()); });
    EXPECT_NE(load.find(want.message), std::string::npos)
        << "Model::from_bytes: '" << load << "', expected '" << want.message << "'";
    EXPECT_NE(check.find(want.message), std::string::npos)
        << "validate_model: '" << check << "', expected '" << want.message << "'";
  }
  std::printf("replayed %d stored loader inputs from %s\n", n, dir.c_str());
  if (!has_manifest) return;
  for (const auto& kv : man.files) EXPECT_TRUE(seen.count(kv.first)) << kv.first << " is listed but missing";
  EXPECT_EQ(n, static_cast<int>(man.files.size()));
  // The committed corpus: one file per loader check, at least 50.
  if (committed) {
    EXPECT_GE(n, 50);
  }
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

// The op bound on its own: 16385 entries of the ops vector all point to one Relu op, so the
// file stays small and the values (2) are far below their bound. With 16384 entries the
// count passes and the second entry fails as a second producer of value 1.
std::vector<std::uint8_t> repeated_op_model(int n_ops) {
  flatbuffers::FlatBufferBuilder fbb;
  const std::vector<int> shape = {1, 1, 1, 1}, in = {0}, out = {1};
  const std::vector<flatbuffers::Offset<fb::Value>> fv = {fb::CreateValueDirect(fbb, "x", &shape),
                                                          fb::CreateValueDirect(fbb, "y", &shape)};
  const auto op = fb::CreateOpDirect(fbb, "relu", fb::OpOptions::Relu, fb::CreateRelu(fbb).Union(), &in, &out);
  const std::vector<flatbuffers::Offset<fb::Op>> fo(static_cast<std::size_t>(n_ops), op);
  fb::FinishModelBuffer(fbb, fb::CreateModelDirect(fbb, kFormatVersion, "bmx tests", &fv, &in, &out, &fo, 0));
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

TEST(LoaderGraphSize, OneOpTooManyIsRefused) {
  const auto too_many = repeated_op_model(kMaxOps + 1);
  const std::string e = error_of([&] { (void)Model::from_bytes(too_many.data(), too_many.size()); });
  EXPECT_NE(e.find("too many ops"), std::string::npos) << e;
  const auto at_bound = repeated_op_model(kMaxOps);
  const std::string f = error_of([&] { validate_model(at_bound.data(), at_bound.size()); });
  EXPECT_NE(f.find("op 1 'relu' (Relu): output value 1 'y' is already defined"), std::string::npos) << f;
}

}  // namespace graph_size

}  // namespace
}  // namespace bmx::testing
