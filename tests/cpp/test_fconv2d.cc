// Direct float convolution (fconv2d: every kernel of the list this CPU runs, AVX-512 and
// AVX2) against the naive double-accumulating reference at awkward sizes: every border /
// interior / tail path, strided pixels, dilation, batch, relu, no bias, 1-3 threads; and
// the kernels against each other, bit for bit (same FMA order per output).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/common/threadpool.h"
#include "core/fconv2d/fconv2d.h"
#include "core/fconv2d/reference.h"

namespace {

struct Case {
  std::int64_t batch, h, w, c_in, c_out, kh, kw, stride, pad, dilation, in_extra;
};

const Case kCases[] = {
    {1, 30, 29, 3, 64, 7, 7, 2, 3, 1, 0},    // ImageNet stem geometry
    {2, 9, 13, 5, 16, 3, 3, 1, 1, 1, 3},     // strided input pixels, batch 2
    {1, 8, 11, 32, 80, 3, 3, 2, 1, 1, 0},    // 80 = 64 + 16 channels
    {1, 7, 7, 7, 48, 3, 3, 1, 2, 2, 0},      // dilation 2
    {1, 5, 1, 4, 32, 3, 3, 1, 1, 1, 0},      // one column: no interior
    {1, 6, 6, 17, 16, 1, 1, 1, 0, 1, 1},     // pointwise
    {1, 3, 20, 2, 32, 3, 5, 1, 0, 1, 0},     // no padding, wide row (tail of 6)
    {1, 4, 4, 3, 16, 5, 5, 1, 2, 1, 0},      // kernel wider than the interior
};

std::vector<float> rnd(std::size_t n, std::mt19937& g) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

TEST(FConv2D, MatchesReference) {
  bmx::FConv2DShape probe;
  probe.in_h = probe.in_w = 3, probe.in_c = 1, probe.out_c = 16;
  if (!bmx::fconv2d_supported(probe)) GTEST_SKIP() << "no AVX-512F or AVX2 + FMA on this CPU";
  for (const auto& kern : bmx::fconv2d_kernels()) {
    if (!kern.available()) continue;
    SCOPED_TRACE(kern.name);
    int ci = 0;
    for (const Case& c : kCases) {
      for (int threads : {1, 3}) {
        for (int variant = 0; variant < 2; ++variant) {
          const unsigned seed = 1000u + static_cast<unsigned>(ci * 10 + threads * 2 + variant);
          SCOPED_TRACE("case " + std::to_string(ci) + " threads " + std::to_string(threads) + " variant " +
                       std::to_string(variant) + " seed " + std::to_string(seed));
          std::mt19937 g(seed);
          bmx::FConv2DShape s;
          s.batch = c.batch, s.in_h = c.h, s.in_w = c.w, s.in_c = c.c_in, s.out_c = c.c_out;
          s.kernel_h = c.kh, s.kernel_w = c.kw, s.stride_h = s.stride_w = c.stride;
          s.pad_h = s.pad_w = c.pad, s.dilation_h = s.dilation_w = c.dilation;
          const std::int64_t in_ps = c.c_in + c.in_extra, out_ps = c.c_out + 3 * variant;
          auto x = rnd(static_cast<std::size_t>(c.batch * c.h * c.w * in_ps), g);
          auto w = rnd(static_cast<std::size_t>(c.kh * c.kw * c.c_in * c.c_out), g);
          auto b = rnd(static_cast<std::size_t>(c.c_out), g);
          const bool relu = variant == 1;
          const float* bias = variant == 1 ? nullptr : b.data();
          const std::size_t n_out = static_cast<std::size_t>(c.batch * s.out_h() * s.out_w() * out_ps);
          std::vector<float> got(n_out, 7.0f), want(n_out, 7.0f);
          bmx::ThreadPool pool(threads);
          bmx::fconv2d(x.data(), in_ps, w.data(), bias, relu, s, got.data(), out_ps, threads > 1 ? &pool : nullptr,
                       &kern);
          bmx::ref::fconv2d(x.data(), in_ps, w.data(), bias, relu, s, want.data(), out_ps);
          const double tol = 1e-4 * std::sqrt(static_cast<double>(c.kh * c.kw * c.c_in)) + 1e-5;
          for (std::size_t i = 0; i < n_out; ++i) {
            ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << "at " << i;
          }
        }
      }
      ++ci;
    }
  }
}

// Every kernel this CPU runs gives the same bits as every other (each output accumulates
// its taps and channels in the same order, one FMA each), including block-diagonal groups.
TEST(FConv2D, KernelsAgreeBitForBit) {
  std::vector<const bmx::FConv2DKernel*> avail;
  for (const auto& k : bmx::fconv2d_kernels())
    if (k.available()) avail.push_back(&k);
  if (avail.size() < 2) GTEST_SKIP() << "fewer than two fconv2d kernels run on this CPU";
  std::mt19937 g(77);
  for (std::int64_t groups : {1, 4}) {
    bmx::FConv2DShape s;
    s.in_h = 13, s.in_w = 17, s.in_c = 12, s.out_c = 80, s.kernel_h = s.kernel_w = 3;
    s.stride_h = s.stride_w = 2, s.pad_h = s.pad_w = 1, s.groups = groups;
    auto x = rnd(static_cast<std::size_t>(s.in_h * s.in_w * s.in_c), g);
    auto w = rnd(static_cast<std::size_t>(9 * s.in_c * s.out_c), g);
    auto b = rnd(static_cast<std::size_t>(s.out_c), g);
    const std::size_t n_out = static_cast<std::size_t>(s.out_h() * s.out_w() * s.out_c);
    std::vector<float> first(n_out, 7.0f);
    bmx::fconv2d(x.data(), s.in_c, w.data(), b.data(), false, s, first.data(), s.out_c, nullptr, avail[0]);
    for (std::size_t k = 1; k < avail.size(); ++k) {
      std::vector<float> got(n_out, 7.0f);
      bmx::fconv2d(x.data(), s.in_c, w.data(), b.data(), false, s, got.data(), s.out_c, nullptr, avail[k]);
      ASSERT_EQ(std::memcmp(got.data(), first.data(), n_out * sizeof(float)), 0)
          << avail[k]->name << " vs " << avail[0]->name << " groups " << groups;
    }
  }
}

// A grouped conv expanded to a block-diagonal dense weight: the kernel skips the zero
// blocks (groups > 1) and must equal the reference on the full dense weight.
TEST(FConv2D, BlockDiagonalGroupsMatchReference) {
  bmx::FConv2DShape probe;
  probe.in_h = probe.in_w = 3, probe.in_c = 1, probe.out_c = 16;
  if (!bmx::fconv2d_supported(probe)) GTEST_SKIP() << "no AVX-512F or AVX2 + FMA on this CPU";
  // (c_in, c_out, groups): MeliusNet's grouped stem (32 -> 32 / 4, 32 -> 64 / 8), groups
  // wider and narrower than 16 outputs, one group per output vector and less.
  const std::int64_t cfg[][3] = {{32, 32, 4}, {32, 64, 8}, {8, 48, 2}, {64, 64, 64}, {12, 32, 4}, {6, 96, 3}};
  for (const auto& kern : bmx::fconv2d_kernels()) {
    if (!kern.available()) continue;
    SCOPED_TRACE(kern.name);
    int ci = 0;
    for (const auto& c : cfg) {
      for (int threads : {1, 2}) {
        const unsigned seed = 500u + static_cast<unsigned>(ci);
        SCOPED_TRACE("c_in " + std::to_string(c[0]) + " c_out " + std::to_string(c[1]) + " groups " +
                     std::to_string(c[2]) + " seed " + std::to_string(seed));
        std::mt19937 g(seed);
        bmx::FConv2DShape s;
        s.in_h = 9, s.in_w = 14, s.in_c = c[0], s.out_c = c[1], s.kernel_h = s.kernel_w = 3;
        s.pad_h = s.pad_w = 1, s.stride_h = s.stride_w = 1 + ci % 2, s.groups = c[2];
        const std::int64_t cg = c[0] / c[2], og = c[1] / c[2];
        auto x = rnd(static_cast<std::size_t>(s.in_h * s.in_w * c[0]), g);
        auto w = rnd(static_cast<std::size_t>(9 * c[0] * c[1]), g);
        for (std::int64_t t = 0; t < 9; ++t)
          for (std::int64_t i = 0; i < c[0]; ++i)
            for (std::int64_t o = 0; o < c[1]; ++o)
              if (i / cg != o / og) w[static_cast<std::size_t>((t * c[0] + i) * c[1] + o)] = 0.0f;
        auto b = rnd(static_cast<std::size_t>(c[1]), g);
        const std::size_t n_out = static_cast<std::size_t>(s.out_h() * s.out_w() * c[1]);
        std::vector<float> got(n_out, 7.0f), want(n_out, 7.0f);
        bmx::ThreadPool pool(threads);
        ASSERT_TRUE(bmx::fconv2d_supported(s));
        bmx::fconv2d(x.data(), c[0], w.data(), b.data(), true, s, got.data(), c[1], threads > 1 ? &pool : nullptr,
                     &kern);
        bmx::ref::fconv2d(x.data(), c[0], w.data(), b.data(), true, s, want.data(), c[1]);
        for (std::size_t i = 0; i < n_out; ++i) ASSERT_NEAR(got[i], want[i], 1e-4 * (1.0 + std::fabs(want[i]))) << i;
      }
      ++ci;
    }
  }
}

TEST(FConv2D, RejectsUnsupported) {
  bmx::FConv2DShape s;
  s.in_h = s.in_w = 4, s.in_c = 3, s.out_c = 10;  // not a multiple of 16
  EXPECT_FALSE(bmx::fconv2d_supported(s));
  std::vector<float> x(48), w(270), o(160);
  EXPECT_THROW(bmx::fconv2d(x.data(), 3, w.data(), nullptr, false, s, o.data(), 10), std::invalid_argument);
  s.out_c = 16;
  s.kernel_h = 9;  // larger than the padded input
  EXPECT_FALSE(bmx::fconv2d_supported(s));
  s.kernel_h = 3, s.groups = 2;  // C_in = 3 not divisible
  EXPECT_FALSE(bmx::fconv2d_supported(s));
}

}  // namespace
