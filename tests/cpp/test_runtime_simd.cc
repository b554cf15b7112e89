// Runtime SIMD paths against their portable forms, bit for bit: the fused BN + sign +
// pack (AVX-512 and AVX2 forms and the dispatcher) at awkward channel counts, strided
// pixels, special values (NaN, +-0, +-Inf, values at the threshold).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/common/cpu.h"
#include "core/common/threadpool.h"
#include "core/signpack/kernels.h"
#include "core/signpack/signpack.h"

namespace {

using bmx::word_t;

std::vector<float> values(std::size_t n, std::mt19937& g) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 19);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            1e-38f, -1e-38f, 0.5f};
  std::vector<float> v(n);
  for (auto& x : v) {
    const int k = pick(g);
    x = k < 8 ? specials[k] : d(g);
  }
  return v;
}

TEST(RuntimeSimd, SignPackFormsEqualPortable) {
  const std::int64_t channels[] = {1, 15, 16, 17, 63, 64, 65, 100, 128, 130, 448};
  for (std::int64_t c : channels) {
    for (int with_scale : {0, 1}) {
      const unsigned seed = 900u + static_cast<unsigned>(c * 2 + with_scale);
      std::mt19937 g(seed);
      const std::int64_t pixels = 37, in_ps = c + 3, words = bmx::words_for_bits(c);
      auto x = values(static_cast<std::size_t>(pixels * in_ps), g);
      auto scale = values(static_cast<std::size_t>(c), g);
      auto shift = values(static_cast<std::size_t>(c), g);
      // Thresholds hit exactly: x = -shift / scale for some channels.
      for (std::int64_t ch = 0; ch < c; ch += 3)
        if (std::isfinite(scale[ch]) && scale[ch] != 0.0f && std::isfinite(shift[ch]))
          x[static_cast<std::size_t>(ch)] = -shift[ch] / scale[ch];
      const float* sc = with_scale ? scale.data() : nullptr;
      const float* sh = with_scale ? shift.data() : nullptr;
      std::vector<word_t> want(static_cast<std::size_t>(pixels * words), 7);
      bmx::kernels::sign_pack__scalar(x.data(), pixels, c, in_ps, sc, sh, want.data());
      for (int threads : {1, 2}) {
        bmx::ThreadPool pool(threads);
        std::vector<word_t> got(want.size(), 7);
        bmx::sign_pack(x.data(), pixels, c, in_ps, sc, sh, got.data(), threads > 1 ? &pool : nullptr);
        ASSERT_EQ(got, want) << "dispatcher C=" << c << " scale=" << with_scale << " seed=" << seed;
      }
#if defined(BMX_ARCH_X86)
      if (with_scale && bmx::cpu_features().avx512f) {
        std::vector<word_t> got(want.size(), 7);
        bmx::kernels::sign_pack__avx512(x.data(), pixels, c, in_ps, sc, sh, got.data());
        ASSERT_EQ(got, want) << "avx512 C=" << c << " seed=" << seed;
      }
      if (with_scale && bmx::cpu_features().avx2) {
        std::vector<word_t> got(want.size(), 7);
        bmx::kernels::sign_pack__avx2(x.data(), pixels, c, in_ps, sc, sh, got.data());
        ASSERT_EQ(got, want) << "avx2 C=" << c << " seed=" << seed;
      }
#endif
    }
  }
}

}  // namespace
