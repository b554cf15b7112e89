// Classify one image with a converted bmx model and print the top-5 classes.
//
//   bmx_classify MODEL.bmx TENSOR.f32 [--threads N]
//
// TENSOR.f32 holds raw little-endian float32 values, NCHW, exactly the model's input
// shape (normalised the way the model was trained); a file holding several images back to
// back is run as a batch and each image gets its own top-5. Output: one line per class,
// "rank index logit". Bad input: one line on stderr and exit code 2.
#include <bmx/engine.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "bmx_classify: " << msg << "\n";
  std::exit(2);
}

std::vector<float> read_tensor(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) die("cannot open tensor file '" + path + "'");
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  if (n <= 0) die("tensor file '" + path + "' is empty or unreadable");
  if (n % 4 != 0) die("tensor file '" + path + "' has " + std::to_string(n) + " bytes, not a whole number of float32");
  f.seekg(0, std::ios::beg);
  std::vector<float> v(static_cast<std::size_t>(n / 4));
  if (!f.read(reinterpret_cast<char*>(v.data()), n)) die("cannot read tensor file '" + path + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads") {
      if (i + 1 >= argc) die("--threads needs a value");
      char* end = nullptr;
      const long t = std::strtol(argv[++i], &end, 10);
      if (!end || *end || t < 1 || t > 256) die(std::string("bad thread count '") + argv[i] + "'");
      threads = static_cast<int>(t);
    } else if (a == "-h" || a == "--help") {
      std::cout << "usage: bmx_classify MODEL.bmx TENSOR.f32 [--threads N]\n";
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      die("unknown option '" + a + "'");
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2) die("usage: bmx_classify MODEL.bmx TENSOR.f32 [--threads N]");

  try {
    bmx::Model model(pos[0], threads);
    const std::vector<float> x = read_tensor(pos[1]);
    const std::int64_t per = model.input_size();
    if (static_cast<std::int64_t>(x.size()) % per != 0) {
      const auto s = model.input_shape();
      die("tensor has " + std::to_string(x.size()) + " floats; the model takes multiples of " + std::to_string(per) +
          " (NCHW " + std::to_string(s[1]) + "x" + std::to_string(s[2]) + "x" + std::to_string(s[3]) + ")");
    }
    const int batch = static_cast<int>(x.size() / per);
    const std::vector<float> logits = model.predict(x, batch);
    const std::int64_t classes = model.output_size();
    for (int b = 0; b < batch; ++b) {
      const float* l = logits.data() + b * classes;
      std::vector<int> idx(static_cast<std::size_t>(classes));
      std::iota(idx.begin(), idx.end(), 0);
      const int k = static_cast<int>(std::min<std::int64_t>(5, classes));
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int c) {
        return l[a] > l[c] || (l[a] == l[c] && a < c);
      });
      if (batch > 1) std::printf("image %d\n", b);
      for (int r = 0; r < k; ++r) std::printf("%d %d %.9g\n", r + 1, idx[r], l[idx[r]]);
    }
  } catch (const bmx::Error& e) {
    die(e.what());
  } catch (const std::exception& e) {
    die(std::string("error: ") + e.what());
  }
  return 0;
}
