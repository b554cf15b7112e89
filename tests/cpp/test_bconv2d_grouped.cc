// Grouped binary convolution (core/bconv2d_grouped) against its bit-by-bit reference,
// float outputs bit for bit, through every bgemm kernel this CPU runs and 1-3 threads, at
// channels per group of 1, 63, 64, 65, 127, 128, 129 and odd output counts; the channel
// slicing kernel against its reference at unaligned offsets; bad arguments. Fixed seeds,
// printed on failure.
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>
#include <vector>

#include "core/bconv2d_grouped/bconv2d_grouped.h"
#include "core/bconv2d_grouped/reference.h"
#include "core/bgemm/bgemm.h"
#include "core/common/scratch.h"
#include "core/common/threadpool.h"

namespace {

using bmx::word_t;

struct Case {
  std::int64_t batch, h, w, cg, og, groups, k, stride, pad, dilation;
  bool relu;
};

const Case kCases[] = {
    {1, 5, 5, 1, 3, 2, 3, 1, 1, 1, false},    {2, 4, 5, 63, 5, 3, 3, 2, 1, 1, true},
    {1, 5, 4, 64, 7, 2, 3, 1, 2, 2, false},   {1, 5, 5, 65, 3, 4, 3, 2, 1, 1, true},
    {1, 3, 5, 127, 1, 3, 1, 1, 0, 1, false},  {1, 4, 4, 128, 9, 2, 3, 1, 1, 1, false},
    {1, 3, 3, 129, 5, 3, 3, 1, 1, 1, true},   {3, 6, 3, 17, 11, 5, 2, 2, 1, 1, false},
    {1, 2, 2, 33, 2, 1, 3, 1, 1, 1, true},
};

bmx::BConv2DShape shape_of(const Case& c) {
  bmx::BConv2DShape s;
  s.batch = c.batch, s.in_h = c.h, s.in_w = c.w, s.in_c = c.cg * c.groups, s.out_c = c.og * c.groups;
  s.kernel_h = s.kernel_w = c.k, s.stride_h = s.stride_w = c.stride, s.pad_h = s.pad_w = c.pad;
  s.dilation_h = s.dilation_w = c.dilation;
  return s;
}

// Random packed rows of `bits` bits each, tail bits 0.
std::vector<word_t> random_rows(std::int64_t rows, std::int64_t bits, std::mt19937_64& g) {
  const std::int64_t words = bmx::words_for_bits(bits);
  std::vector<word_t> v(static_cast<std::size_t>(rows * words));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < words; ++j) v[r * words + j] = g() & (j == words - 1 ? bmx::tail_mask(bits) : ~word_t{0});
  return v;
}

// Multiples of 1/8 in [-2, 2] (scale) and [-20, 20] (shift): sums exact, no ties hidden.
std::vector<float> random_floats(std::int64_t n, int lo, int hi, std::mt19937_64& g) {
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<float>(u(g)) / 8.0f;
  return v;
}

TEST(BConv2DGrouped, EveryKernelAndThreadCountMatchesReference) {
  for (const Case& c : kCases) {
    const unsigned seed = static_cast<unsigned>(500 + c.cg * 16 + c.groups);
    std::mt19937_64 g(seed);
    const auto s = shape_of(c);
    const auto x = random_rows(s.batch * s.in_h * s.in_w, s.in_c, g);
    const auto f = random_rows(s.out_c * c.k * c.k, c.cg, g);
    const auto scale = random_floats(s.out_c, -16, 16, g);
    const auto shift = random_floats(s.out_c, -160, 160, g);
    const std::int64_t out_ps = s.out_c + 3;  // a slice of a wider tensor
    const std::int64_t pixels = s.batch * s.out_h() * s.out_w();
    std::vector<float> want(static_cast<std::size_t>(pixels * out_ps), -7.0f);
    bmx::ref::bconv2d_grouped(x.data(), f.data(), s, c.groups, scale.data(), shift.data(), c.relu, want.data(), out_ps);
    bmx::ScratchBuffer<unsigned char> work;
    unsigned char* wp = work.get(bmx::bconv2d_grouped_work_bytes(s, c.groups));
    for (const auto& kern : bmx::bgemm_kernels()) {
      if (!kern.available()) continue;
      for (int threads : {1, 2, 3}) {
        bmx::ThreadPool pool(threads);
        std::vector<float> got(want.size(), -7.0f);  // the padding channels stay untouched
        bmx::BConvOutput o;
        o.scale = scale.data(), o.shift = shift.data(), o.relu = c.relu, o.out = got.data(), o.out_ps = out_ps;
        double epi = -1.0;
        bmx::bconv2d_grouped(x.data(), f.data(), s, c.groups, o, wp, threads > 1 ? &pool : nullptr, &kern, &epi);
        ASSERT_EQ(got, want) << kern.name << " threads=" << threads << " cg=" << c.cg << " groups=" << c.groups
                             << " seed=" << seed;
        EXPECT_GE(epi, 0.0);
      }
    }
  }
}

TEST(BConv2DGrouped, SliceChannelsMatchesReference) {
  for (std::int64_t in_c : {65, 129, 200, 384}) {
    for (std::int64_t cg : {1, 63, 64, 65, 127, 128, 129}) {
      if (cg > in_c) continue;
      for (std::int64_t bit0 : {std::int64_t{0}, std::int64_t{1}, std::int64_t{63}, in_c - cg}) {
        if (bit0 + cg > in_c) continue;
        const unsigned seed = static_cast<unsigned>(in_c * 1000 + cg * 7 + bit0);
        std::mt19937_64 g(seed);
        const std::int64_t pixels = 300, wg = bmx::words_for_bits(cg);
        const auto in = random_rows(pixels, in_c, g);
        std::vector<word_t> want(static_cast<std::size_t>(pixels * wg)), got(want.size(), 0x1234ULL);
        bmx::ref::slice_channels(in.data(), pixels, bmx::words_for_bits(in_c), bit0, cg, want.data());
        bmx::ThreadPool pool(2);
        bmx::slice_channels(in.data(), pixels, bmx::words_for_bits(in_c), bit0, cg, got.data(), &pool);
        ASSERT_EQ(got, want) << "in_c=" << in_c << " cg=" << cg << " bit0=" << bit0 << " seed=" << seed;
      }
    }
  }
}

TEST(BConv2DGrouped, ReferenceAgainstHandCount) {
  // One pixel, 1x1 kernel, 2 groups of 2 channels: input bits 1,0 | 1,1, filters of output 0
  // (group 0) 1,1 and of output 1 (group 1) 0,1: matches 1 and 1; out = scale * 1 + shift.
  bmx::BConv2DShape s;
  s.in_h = s.in_w = 1, s.in_c = 4, s.out_c = 2, s.kernel_h = s.kernel_w = 1;
  const word_t x[1] = {0b1101};
  const word_t f[2] = {0b11, 0b10};
  const float scale[2] = {2.0f, -1.0f}, shift[2] = {0.5f, 0.25f};
  float out[2] = {0, 0};
  bmx::ref::bconv2d_grouped(x, f, s, 2, scale, shift, false, out, 2);
  EXPECT_EQ(out[0], 2.5f);
  EXPECT_EQ(out[1], -0.75f);
  bmx::ref::bconv2d_grouped(x, f, s, 2, scale, shift, true, out, 2);
  EXPECT_EQ(out[1], 0.0f);
}

TEST(BConv2DGrouped, BadArgumentsThrow) {
  const Case c{1, 3, 3, 8, 4, 2, 3, 1, 1, 1, false};
  auto s = shape_of(c);
  std::vector<word_t> x(9 * 1), f(8 * 9);
  std::vector<float> scale(8, 1.0f), shift(8, 0.0f), out(9 * 8);
  bmx::ScratchBuffer<unsigned char> work;
  unsigned char* wp = work.get(bmx::bconv2d_grouped_work_bytes(s, 2));
  bmx::BConvOutput o;
  o.scale = scale.data(), o.shift = shift.data(), o.out = out.data(), o.out_ps = 8;
  EXPECT_THROW(bmx::bconv2d_grouped(x.data(), f.data(), s, 3, o, wp), std::invalid_argument);  // 3 !| 16
  EXPECT_THROW(bmx::bconv2d_grouped(x.data(), f.data(), s, 0, o, wp), std::invalid_argument);
  bmx::BConvOutput no_scale = o;
  no_scale.scale = nullptr;
  EXPECT_THROW(bmx::bconv2d_grouped(x.data(), f.data(), s, 2, no_scale, wp), std::invalid_argument);
  bmx::BConvOutput with_res = o;
  with_res.residual = out.data();
  EXPECT_THROW(bmx::bconv2d_grouped(x.data(), f.data(), s, 2, with_res, wp), std::invalid_argument);
  bmx::BConvOutput narrow = o;
  narrow.out_ps = 7;
  EXPECT_THROW(bmx::bconv2d_grouped(x.data(), f.data(), s, 2, narrow, wp), std::invalid_argument);
  EXPECT_NO_THROW(bmx::bconv2d_grouped(x.data(), f.data(), s, 2, o, wp));
}

}  // namespace
