// Binary convolution: bconv2d (im2col + every available bgemm kernel, 1-3 threads)
// against the direct reference, and the reference against a float convolution of the
// unpacked +-1 values with explicit -1 padding (independent oracle).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/bconv2d/bconv2d.h"
#include "core/bconv2d/reference.h"
#include "core/bgemm/bgemm.h"
#include "core/bitpack/reference.h"
#include "core/common/threadpool.h"

namespace {

using bmx::word_t;

struct Case {
  std::int64_t batch, h, w, c_in, c_out, kh, kw, stride, pad, dilation;
};

const Case kCases[] = {
    {1, 5, 5, 1, 3, 3, 3, 1, 1, 1},     {2, 7, 6, 63, 5, 3, 3, 2, 1, 1},   {1, 8, 8, 64, 7, 3, 3, 1, 2, 2},
    {1, 6, 9, 65, 4, 3, 3, 2, 2, 2},    {1, 5, 5, 130, 9, 3, 3, 1, 1, 1},  {1, 4, 4, 70, 3, 1, 1, 1, 0, 1},
    {1, 9, 7, 33, 17, 3, 2, 2, 0, 1},   {1, 7, 7, 256, 64, 3, 3, 1, 1, 1}, {1, 3, 3, 5, 2, 5, 5, 1, 2, 1},
};

// +-1 float data in NHWC / OHWI, and its packed form.
std::vector<float> random_pm1(std::int64_t n, std::mt19937& rng) {
  std::bernoulli_distribution coin(0.5);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = coin(rng) ? -1.0f : 1.0f;
  return v;
}

bmx::BConv2DShape shape_of(const Case& c) {
  bmx::BConv2DShape s;
  s.batch = c.batch, s.in_h = c.h, s.in_w = c.w, s.in_c = c.c_in, s.out_c = c.c_out;
  s.kernel_h = c.kh, s.kernel_w = c.kw, s.stride_h = s.stride_w = c.stride, s.pad_h = s.pad_w = c.pad;
  s.dilation_h = s.dilation_w = c.dilation;
  return s;
}

TEST(BConv2D, ReferenceMatchesFloatConvWithMinusOnePadding) {
  for (const Case& c : kCases) {
    std::mt19937 rng(static_cast<unsigned>(c.c_in * 31 + c.h));
    const auto s = shape_of(c);
    auto x = random_pm1(c.batch * c.h * c.w * c.c_in, rng);
    auto f = random_pm1(c.c_out * c.kh * c.kw * c.c_in, rng);
    const std::int64_t iw = s.in_words();
    std::vector<word_t> xp(static_cast<std::size_t>(c.batch * c.h * c.w * iw)), fp(static_cast<std::size_t>(c.c_out * c.kh * c.kw * iw));
    bmx::ref::pack_rows(x.data(), c.batch * c.h * c.w, c.c_in, xp.data());
    bmx::ref::pack_rows(f.data(), c.c_out * c.kh * c.kw, c.c_in, fp.data());
    const std::int64_t oh = s.out_h(), ow = s.out_w();
    std::vector<std::int32_t> got(static_cast<std::size_t>(c.batch * oh * ow * c.c_out));
    bmx::ref::bconv2d(xp.data(), fp.data(), s, got.data());
    for (std::int64_t n = 0; n < c.batch; ++n)
      for (std::int64_t y = 0; y < oh; ++y)
        for (std::int64_t xx = 0; xx < ow; ++xx)
          for (std::int64_t co = 0; co < c.c_out; ++co) {
            double acc = 0;
            for (std::int64_t ky = 0; ky < c.kh; ++ky)
              for (std::int64_t kx = 0; kx < c.kw; ++kx) {
                const std::int64_t iy = y * c.stride - c.pad + ky * c.dilation, ix = xx * c.stride - c.pad + kx * c.dilation;
                const bool in = iy >= 0 && iy < c.h && ix >= 0 && ix < c.w;
                for (std::int64_t ci = 0; ci < c.c_in; ++ci) {
                  const float v = in ? x[static_cast<std::size_t>(((n * c.h + iy) * c.w + ix) * c.c_in + ci)] : -1.0f;
                  acc += v * f[static_cast<std::size_t>(((co * c.kh + ky) * c.kw + kx) * c.c_in + ci)];
                }
              }
            ASSERT_EQ(got[static_cast<std::size_t>(((n * oh + y) * ow + xx) * c.c_out + co)], static_cast<std::int32_t>(acc))
                << "C_in=" << c.c_in << " stride=" << c.stride << " dilation=" << c.dilation;
          }
  }
}

TEST(BConv2D, EveryKernelAndThreadCountMatchesReference) {
  for (const Case& c : kCases) {
    std::mt19937_64 rng(static_cast<unsigned long long>(c.c_in * 1009 + c.c_out));
    const auto s = shape_of(c);
    const std::int64_t iw = s.in_words();
    // Random words with zero tails (packed data always has them).
    auto rows = [&](std::int64_t r) {
      std::vector<word_t> v(static_cast<std::size_t>(r * iw));
      for (std::int64_t i = 0; i < r; ++i)
        for (std::int64_t j = 0; j < iw; ++j)
          v[static_cast<std::size_t>(i * iw + j)] = rng() & (j == iw - 1 ? bmx::tail_mask(c.c_in) : ~0ULL);
      return v;
    };
    auto xp = rows(c.batch * c.h * c.w);
    auto fp = rows(c.c_out * c.kh * c.kw);
    const std::size_t out_n = static_cast<std::size_t>(c.batch * s.out_h() * s.out_w() * c.c_out);
    std::vector<std::int32_t> want(out_n);
    bmx::ref::bconv2d(xp.data(), fp.data(), s, want.data());
    for (const auto& kern : bmx::bgemm_kernels()) {
      if (!kern.available()) continue;
      for (int threads : {1, 2, 3}) {
        bmx::ThreadPool pool(threads);
        std::vector<std::int32_t> got(out_n, -99);
        bmx::bconv2d(xp.data(), fp.data(), s, got.data(), &pool, &kern);
        ASSERT_EQ(got, want) << kern.name << " threads=" << threads << " C_in=" << c.c_in << " C_out=" << c.c_out
                             << " stride=" << c.stride << " pad=" << c.pad << " dilation=" << c.dilation;
        // Filters arranged once for the kernel (as a model holds them).
        const std::int64_t pw = bmx::bconv2d_packed_filter_words(s, kern);
        if (pw == 0) continue;
        std::vector<word_t> packed(static_cast<std::size_t>(pw));
        bmx::bconv2d_pack_filter(fp.data(), s, kern, packed.data());
        std::fill(got.begin(), got.end(), -99);
        bmx::bconv2d(xp.data(), fp.data(), s, got.data(), &pool, &kern, packed.data());
        ASSERT_EQ(got, want) << kern.name << " packed filter, threads=" << threads << " C_in=" << c.c_in;
      }
    }
  }
}

TEST(BConv2D, ValueInputPackedInsideMatchesReference) {
  // Input given as float32 / int8 values, packed by each block inside the convolution's
  // parallel loop (halo rows included), against the reference on packed data. Values
  // include exact zeros and -0.0 (bit 0: the convention's sign(0) = +1); the batch of 3
  // makes blocks cross image boundaries.
  std::vector<Case> cases(std::begin(kCases), std::end(kCases));
  cases.push_back({3, 5, 5, 70, 16, 3, 3, 1, 1, 1});
  cases.push_back({3, 6, 5, 9, 8, 3, 3, 2, 1, 2});
  for (const Case& c : cases) {
    std::mt19937 rng(static_cast<unsigned>(c.c_in * 7 + c.batch * 131 + c.h));
    std::uniform_int_distribution<int> pick(-3, 3);
    const auto s = shape_of(c);
    const std::int64_t iw = s.in_words(), in_px = c.batch * c.h * c.w;
    std::vector<float> xf(static_cast<std::size_t>(in_px * c.c_in));
    std::vector<std::int8_t> xi(xf.size());
    for (std::size_t i = 0; i < xf.size(); ++i) {
      const int v = pick(rng);
      xi[i] = static_cast<std::int8_t>(v);
      xf[i] = v == 0 ? ((i & 1) ? -0.0f : 0.0f) : 0.5f * static_cast<float>(v);
    }
    auto f = random_pm1(c.c_out * c.kh * c.kw * c.c_in, rng);
    std::vector<word_t> xp(static_cast<std::size_t>(in_px * iw)), fp(static_cast<std::size_t>(c.c_out * c.kh * c.kw * iw));
    bmx::ref::pack_rows(xf.data(), in_px, c.c_in, xp.data());
    bmx::ref::pack_rows(f.data(), c.c_out * c.kh * c.kw, c.c_in, fp.data());
    const std::size_t out_n = static_cast<std::size_t>(c.batch * s.out_h() * s.out_w() * c.c_out);
    std::vector<std::int32_t> want(out_n);
    bmx::ref::bconv2d(xp.data(), fp.data(), s, want.data());
    for (int threads : {1, 2, 3}) {
      bmx::ThreadPool pool(threads);
      for (int rep = 0; rep < 2; ++rep) {  // the thread-local packed image is reused
        std::vector<std::int32_t> got(out_n, -99);
        bmx::bconv2d(xf.data(), fp.data(), s, got.data(), &pool);
        ASSERT_EQ(got, want) << "float threads=" << threads << " batch=" << c.batch << " C_in=" << c.c_in
                             << " stride=" << c.stride << " pad=" << c.pad << " dilation=" << c.dilation;
        std::fill(got.begin(), got.end(), -99);
        bmx::bconv2d(xi.data(), fp.data(), s, got.data(), &pool);
        ASSERT_EQ(got, want) << "int8 threads=" << threads << " batch=" << c.batch << " C_in=" << c.c_in;
        const auto& kern = bmx::bgemm_kernel("auto");
        if (const std::int64_t pw = bmx::bconv2d_packed_filter_words(s, kern)) {
          std::vector<word_t> packed(static_cast<std::size_t>(pw));
          bmx::bconv2d_pack_filter(fp.data(), s, kern, packed.data());
          std::fill(got.begin(), got.end(), -99);
          bmx::bconv2d(xf.data(), fp.data(), s, got.data(), &pool, &kern, packed.data());
          ASSERT_EQ(got, want) << "float, packed filter, threads=" << threads << " C_in=" << c.c_in;
        }
      }
    }
  }
}

TEST(BConv2D, RejectsBadShapes) {
  bmx::BConv2DShape s;
  s.in_h = s.in_w = 2, s.in_c = 3, s.out_c = 1;  // 3x3 kernel, no padding: empty output
  word_t w = 0;
  std::int32_t o = 0;
  EXPECT_THROW(bmx::bconv2d(&w, &w, s, &o), std::invalid_argument);
  s.in_h = s.in_w = 4;
  s.stride_h = 0;
  EXPECT_THROW(bmx::bconv2d(&w, &w, s, &o), std::invalid_argument);
}

}  // namespace
