// The C++ lines of README.md, compiled with -Wall -Wextra -Wpedantic -Werror by g++ and
// clang++ and run on a converted model by tests/test_cpp_readme.py, which also checks
// that every C++ code span of README.md appears verbatim in this file (so the two cannot
// drift). Named .cpp, not .cc: tests/cpp/CMakeLists.txt globs *.cc into bmx_tests, and
// this program has its own main().
//
// Usage, in a directory holding m.bmx:  readme_snippet X.f32 BATCH
// Prints the input shape, then one line of logits per way of loading the model, then the
// error of loading from a null const char*.
#include <bmx/engine.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw bmx::Error("cannot open '" + path + "'");
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void print(const char* label, const std::vector<float>& y) {
  std::printf("%s", label);
  for (float v : y) std::printf(" %.9g", static_cast<double>(v));  // %.9g round-trips a float
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_snippet X.f32 BATCH (in a directory holding m.bmx)\n");
    return 2;
  }
  try {
    const std::vector<char> raw = read_bytes(argv[1]);
    std::vector<float> x(raw.size() / sizeof(float));
    std::memcpy(x.data(), raw.data(), x.size() * sizeof(float));
    const int batch = std::atoi(argv[2]);

    // README.md, C++ paragraph, verbatim:
    bmx::Model m("m.bmx", 1); auto y = m.predict(x, batch);
    const auto s = m.input_shape();
    std::printf("input_shape %lld %lld %lld %lld\n", static_cast<long long>(s[0]), static_cast<long long>(s[1]),
                static_cast<long long>(s[2]), static_cast<long long>(s[3]));
    print("readme", y);

    // A std::string path, default num_threads.
    const std::string path = "m.bmx";
    bmx::Model m_string(path);
    print("string", m_string.predict(x, batch));

    // A std::filesystem::path, two threads.
    const std::filesystem::path fs_path = std::filesystem::current_path() / "m.bmx";
    bmx::Model m_fs(fs_path, 2);
    print("filesystem_path", m_fs.predict(x, batch));

    // Bytes in memory (README.md, verbatim):
    const std::vector<char> bytes = read_bytes("m.bmx");
    const void* data = bytes.data();
    const std::size_t size = bytes.size();
    auto m2 = bmx::Model::from_bytes(data, size, 1);
    print("from_bytes", m2.predict(x, batch));

    // A null const char* (only a literal nullptr is caught at compile time).
    const char* no_path = nullptr;
    try {
      bmx::Model bad(no_path);
      std::printf("null_path loaded %d ops\n", bad.num_ops());
    } catch (const bmx::Error& e) {
      std::printf("null_path error %s\n", e.what());
    }
  } catch (const bmx::Error& e) {
    std::fprintf(stderr, "bmx::Error: %s\n", e.what());
    return 1;
  }
  return 0;
}
