// bconv2d with the float epilogue fused (BConvOutput) and with filters pre-arranged by
// bconv2d_pack_filter, against the reference convolution followed by the epilogue, for
// every available kernel and 1-3 threads; and the packed bgemm form against the
// reference GEMM at awkward sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/bconv2d/bconv2d.h"
#include "core/bconv2d/reference.h"
#include "core/bgemm/bgemm.h"
#include "core/bgemm/reference.h"
#include "core/common/threadpool.h"

namespace {

using bmx::word_t;

struct Case {
  std::int64_t batch, h, w, c_in, c_out, kh, kw, stride, pad, dilation;
};

const Case kCases[] = {
    {1, 5, 5, 1, 3, 3, 3, 1, 1, 1},   {2, 7, 6, 63, 5, 3, 3, 2, 1, 1},    {1, 8, 8, 64, 17, 3, 3, 1, 2, 2},
    {1, 4, 4, 70, 33, 1, 1, 1, 0, 1}, {1, 7, 7, 256, 64, 3, 3, 1, 1, 1},  {1, 9, 11, 130, 40, 3, 3, 1, 1, 1},
};

std::vector<word_t> random_rows(std::int64_t r, std::int64_t words, std::int64_t bits, std::mt19937_64& rng) {
  std::vector<word_t> v(static_cast<std::size_t>(r * words));
  for (std::int64_t i = 0; i < r; ++i)
    for (std::int64_t j = 0; j < words; ++j)
      v[static_cast<std::size_t>(i * words + j)] = rng() & (j == words - 1 ? bmx::tail_mask(bits) : ~0ULL);
  return v;
}

TEST(BConv2DFused, FloatOutputAndPackedFilterMatchReference) {
  int ci = 0;
  for (const Case& c : kCases) {
    const unsigned long long seed = 77 + static_cast<unsigned long long>(ci++);
    std::mt19937_64 rng(seed);
    bmx::BConv2DShape s;
    s.batch = c.batch, s.in_h = c.h, s.in_w = c.w, s.in_c = c.c_in, s.out_c = c.c_out;
    s.kernel_h = c.kh, s.kernel_w = c.kw, s.stride_h = s.stride_w = c.stride, s.pad_h = s.pad_w = c.pad;
    s.dilation_h = s.dilation_w = c.dilation;
    const std::int64_t iw = s.in_words();
    auto xp = random_rows(c.batch * c.h * c.w, iw, c.c_in, rng);
    auto fp = random_rows(c.c_out * c.kh * c.kw, iw, c.c_in, rng);
    const std::int64_t pixels = c.batch * s.out_h() * s.out_w();
    std::vector<std::int32_t> dot(static_cast<std::size_t>(pixels * c.c_out));
    bmx::ref::bconv2d(xp.data(), fp.data(), s, dot.data());
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> scale(static_cast<std::size_t>(c.c_out)), shift(scale.size());
    for (auto& v : scale) v = u(rng);
    for (auto& v : shift) v = u(rng);
    const std::int64_t out_ps = c.c_out + 5;  // a slice of a wider tensor
    const std::int64_t res_ps = c.c_out + 2;
    std::vector<float> residual(static_cast<std::size_t>(pixels * res_ps));
    for (auto& v : residual) v = u(rng);
    for (int variant = 0; variant < 5; ++variant) {
      const bool relu = variant == 1 || variant == 4;
      const float* sc = variant == 2 ? nullptr : scale.data();
      const float* sh = variant == 2 ? nullptr : shift.data();
      const float* res = variant >= 3 ? residual.data() : nullptr;
      std::vector<float> want(static_cast<std::size_t>(pixels * out_ps), 123.0f);
      for (std::int64_t p = 0; p < pixels; ++p)
        for (std::int64_t o = 0; o < c.c_out; ++o) {
          const float match = static_cast<float>((dot[static_cast<std::size_t>(p * c.c_out + o)] + s.k_bits()) / 2);
          float v = (sc ? sc[o] * match : match) + (sh ? sh[o] : 0.0f);
          v = relu ? std::max(v, 0.0f) : v;
          if (res) v = v + res[p * res_ps + o];
          want[static_cast<std::size_t>(p * out_ps + o)] = v;
        }
      for (const auto& kern : bmx::bgemm_kernels()) {
        if (!kern.available()) continue;
        std::vector<word_t> packed(static_cast<std::size_t>(bmx::bconv2d_packed_filter_words(s, kern)));
        if (!packed.empty()) bmx::bconv2d_pack_filter(fp.data(), s, kern, packed.data());
        for (int use_packed : {0, 1}) {
          if (use_packed && packed.empty()) continue;
          for (int threads : {1, 2, 3}) {
            bmx::ThreadPool pool(threads);
            std::vector<float> got(want.size(), 123.0f);
            bmx::BConvOutput o;
            o.scale = sc, o.shift = sh, o.relu = relu, o.out = got.data(), o.out_ps = out_ps;
            o.residual = res, o.residual_ps = res_ps;
            bmx::bconv2d(xp.data(), fp.data(), s, o, &pool, &kern, use_packed ? packed.data() : nullptr);
            for (std::size_t i = 0; i < want.size(); ++i)
              ASSERT_NEAR(got[i], want[i], 1e-6f * (1.0f + std::fabs(want[i])))
                  << kern.name << " packed=" << use_packed << " threads=" << threads << " variant=" << variant
                  << " case seed=" << seed << " at " << i;
          }
        }
      }
    }
  }
}

TEST(BgemmPacked, RunPackedMatchesReference) {
  const std::int64_t sizes[][3] = {{1, 1, 1}, {7, 15, 63}, {9, 16, 64}, {17, 17, 65}, {8, 33, 127}, {13, 48, 129}, {64, 64, 4608}};
  for (const auto& kern : bmx::bgemm_kernels()) {
    if (!kern.available() || !kern.run_packed) continue;
    for (const auto& sz : sizes) {
      const std::int64_t m = sz[0], n = sz[1], k = sz[2], words = (k + 63) / 64;
      const unsigned long long seed = static_cast<unsigned long long>(m * 131 + n * 7 + k);
      std::mt19937_64 rng(seed);
      auto a = random_rows(m, words, k, rng);
      auto b = random_rows(n, words, k, rng);
      std::vector<std::int32_t> want(static_cast<std::size_t>(m * n)), got(want.size(), -7);
      bmx::ref::bgemm(a.data(), words, b.data(), words, 0, m, 0, n, words, static_cast<std::int32_t>(k), want.data(), n);
      std::vector<word_t> packed(static_cast<std::size_t>(kern.packed_b_words(n, words)));
      kern.pack_b(b.data(), words, n, words, packed.data());
      // Two column ranges split at 16 (n0 must be a multiple of the panel).
      const std::int64_t split = std::min<std::int64_t>(n, 16);
      kern.run_packed(a.data(), words, packed.data(), 0, m, 0, split, words, static_cast<std::int32_t>(k), got.data(), n);
      kern.run_packed(a.data(), words, packed.data(), 0, m, split, n, words, static_cast<std::int32_t>(k), got.data(), n);
      ASSERT_EQ(got, want) << kern.name << " M=" << m << " N=" << n << " K=" << k << " seed=" << seed;
    }
  }
}

}  // namespace
