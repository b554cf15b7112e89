// Bit-packing: every packing kernel the CPU can run against the reference, every bit,
// including the tail, -0.0, NaN, infinities and int8 extremes; strided rows.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/bitpack/bitpack.h"
#include "core/bitpack/kernels.h"
#include "core/bitpack/reference.h"
#include "core/common/threadpool.h"

namespace {

using bmx::word_t;

std::vector<float> random_floats(std::int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> special(0, 15);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    switch (special(rng)) {
      case 0: x = -0.0f; break;
      case 1: x = 0.0f; break;
      case 2: x = std::numeric_limits<float>::quiet_NaN(); break;
      case 3: x = -std::numeric_limits<float>::quiet_NaN(); break;
      case 4: x = -std::numeric_limits<float>::infinity(); break;
      case 5: x = -std::numeric_limits<float>::denorm_min(); break;
      default: x = u(rng);
    }
  }
  return v;
}

std::vector<std::int8_t> random_i8(std::int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(-128, 127);
  std::vector<std::int8_t> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<std::int8_t>(u(rng));
  return v;
}

const std::int64_t kLengths[] = {1, 7, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 4608};

TEST(Bitpack, EveryKernelMatchesReferenceF32) {
  int count = 0;
  const auto* ks = bmx::kernels::pack_kernels(&count);
  for (int i = 0; i < count; ++i) {
    if (!ks[i].available()) continue;
    for (std::int64_t k : kLengths) {
      const unsigned seed = static_cast<unsigned>(1000 + k);
      const std::int64_t rows = 5, w = bmx::words_for_bits(k);
      auto x = random_floats(rows * k, seed);
      std::vector<word_t> want(static_cast<std::size_t>(rows * w)), got(static_cast<std::size_t>(rows * w), 0xdeadbeefULL);
      bmx::ref::pack_rows(x.data(), rows, k, want.data());
      ks[i].f32(x.data(), rows, k, k, got.data(), w);
      EXPECT_EQ(got, want) << ks[i].name << " k=" << k << " seed=" << seed;
    }
  }
}

TEST(Bitpack, EveryKernelMatchesReferenceI8) {
  int count = 0;
  const auto* ks = bmx::kernels::pack_kernels(&count);
  for (int i = 0; i < count; ++i) {
    if (!ks[i].available()) continue;
    for (std::int64_t k : kLengths) {
      const unsigned seed = static_cast<unsigned>(2000 + k);
      const std::int64_t rows = 3, w = bmx::words_for_bits(k);
      auto x = random_i8(rows * k, seed);
      std::vector<word_t> want(static_cast<std::size_t>(rows * w)), got(static_cast<std::size_t>(rows * w), ~0ULL);
      bmx::ref::pack_rows(x.data(), rows, k, want.data());
      ks[i].i8(x.data(), rows, k, k, got.data(), w);
      EXPECT_EQ(got, want) << ks[i].name << " k=" << k << " seed=" << seed;
    }
  }
}

TEST(Bitpack, EveryBitAndTail) {
  // One negative value at each position in turn: exactly that bit is set, tail stays 0.
  for (std::int64_t k : {1, 63, 64, 65, 129}) {
    for (std::int64_t pos = 0; pos < k; ++pos) {
      std::vector<float> x(static_cast<std::size_t>(k), 1.0f);
      x[static_cast<std::size_t>(pos)] = -2.0f;
      std::vector<word_t> got(static_cast<std::size_t>(bmx::words_for_bits(k)), ~0ULL);
      bmx::pack_rows(x.data(), 1, k, k, got.data(), bmx::words_for_bits(k));
      for (std::int64_t w = 0; w < bmx::words_for_bits(k); ++w) {
        const word_t expect = (w == pos / 64) ? (word_t{1} << (pos % 64)) : 0;
        ASSERT_EQ(got[static_cast<std::size_t>(w)], expect) << "k=" << k << " pos=" << pos;
      }
    }
    std::vector<float> neg(static_cast<std::size_t>(k), -1.0f);
    std::vector<word_t> got(static_cast<std::size_t>(bmx::words_for_bits(k)));
    bmx::pack_rows(neg.data(), 1, k, k, got.data(), bmx::words_for_bits(k));
    EXPECT_EQ(got.back(), bmx::tail_mask(k)) << "all -1 row of k=" << k << ": tail must be 0";
  }
}

TEST(Bitpack, SpecialValues) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {-0.0f, 0.0f, nan, -nan, -1e-30f, 1e-30f, -INFINITY, INFINITY};
  int count = 0;
  const auto* ks = bmx::kernels::pack_kernels(&count);
  x.resize(64, 1.0f);  // full word so the SIMD path is taken
  for (int i = 0; i < count; ++i) {
    if (!ks[i].available()) continue;
    word_t w = 0;
    ks[i].f32(x.data(), 1, 64, 64, &w, 1);
    EXPECT_EQ(w, word_t{0x50}) << ks[i].name << ": only -1e-30 and -inf are < 0";
  }
}

TEST(Bitpack, StridedRowsAndThreads) {
  const std::int64_t rows = 301, k = 130, in_stride = 141, w = bmx::words_for_bits(k), out_stride = w + 1;
  auto x = random_floats(rows * in_stride, 7);
  std::vector<float> dense(static_cast<std::size_t>(rows * k));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < k; ++i) dense[static_cast<std::size_t>(r * k + i)] = x[static_cast<std::size_t>(r * in_stride + i)];
  std::vector<word_t> want(static_cast<std::size_t>(rows * w));
  bmx::ref::pack_rows(dense.data(), rows, k, want.data());
  bmx::ThreadPool pool(3);
  std::vector<word_t> got(static_cast<std::size_t>(rows * out_stride), 0);
  bmx::pack_rows(x.data(), rows, k, in_stride, got.data(), out_stride, &pool);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < w; ++j)
      ASSERT_EQ(got[static_cast<std::size_t>(r * out_stride + j)], want[static_cast<std::size_t>(r * w + j)]) << "row " << r;
}

}  // namespace
