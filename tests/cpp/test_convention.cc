// The bit convention of bmx/convention.h, checked value by value.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "bmx/convention.h"
#include "core/bitpack/reference.h"

namespace {

TEST(Convention, SignOfZeroIsPlusOne) {
  EXPECT_EQ(bmx::sign(0.0f), 1.0f);
  EXPECT_EQ(bmx::sign(-0.0f), 1.0f);  // -0.0 < 0 is false
  EXPECT_EQ(bmx::sign(-1e-30f), -1.0f);
  EXPECT_EQ(bmx::sign(3.0f), 1.0f);
}

TEST(Convention, BitIsOneIffNegative) {
  EXPECT_TRUE(bmx::to_bit(-1.0f));
  EXPECT_FALSE(bmx::to_bit(0.0f));
  EXPECT_FALSE(bmx::to_bit(1.0f));
  EXPECT_FALSE(bmx::to_bit(std::numeric_limits<float>::quiet_NaN()));
  EXPECT_TRUE(bmx::to_bit(static_cast<std::int8_t>(-128)));
  EXPECT_FALSE(bmx::to_bit(static_cast<std::int8_t>(0)));
}

TEST(Convention, WordsAndTailMask) {
  EXPECT_EQ(bmx::words_for_bits(1), 1);
  EXPECT_EQ(bmx::words_for_bits(64), 1);
  EXPECT_EQ(bmx::words_for_bits(65), 2);
  EXPECT_EQ(bmx::tail_mask(64), ~bmx::word_t{0});
  EXPECT_EQ(bmx::tail_mask(1), bmx::word_t{1});
  EXPECT_EQ(bmx::tail_mask(65), bmx::word_t{1});
  EXPECT_EQ(bmx::tail_mask(63), (bmx::word_t{1} << 63) - 1);
}

TEST(Convention, XnorDotMatchesFloatDot) {
  // +-1 vectors of awkward length; dot computed in float vs. via packed bits.
  for (int k : {1, 63, 64, 65, 127, 128, 129}) {
    std::vector<float> a(k), b(k);
    unsigned s = 12345u + k;
    for (int i = 0; i < k; ++i) {
      s = s * 1103515245u + 12345u;
      a[i] = (s >> 16) & 1 ? 1.f : -1.f;
      s = s * 1103515245u + 12345u;
      b[i] = (s >> 16) & 1 ? 1.f : -1.f;
    }
    float dot = 0;
    for (int i = 0; i < k; ++i) dot += a[i] * b[i];
    std::vector<bmx::word_t> pa(bmx::words_for_bits(k)), pb(pa.size());
    bmx::ref::pack_rows(a.data(), 1, k, pa.data());
    bmx::ref::pack_rows(b.data(), 1, k, pb.data());
    int pc = 0;
    for (size_t w = 0; w < pa.size(); ++w) pc += __builtin_popcountll(pa[w] ^ pb[w]);
    EXPECT_EQ(bmx::xnor_dot(k, pc), static_cast<int>(dot)) << "k=" << k;
    EXPECT_EQ(bmx::match_count(k, pc), static_cast<int>((dot + k) / 2)) << "k=" << k;
    EXPECT_EQ(pa.back() & ~bmx::tail_mask(k), 0u) << "tail bits must be 0, k=" << k;
  }
}

}  // namespace
