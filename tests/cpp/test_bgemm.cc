// Binary GEMM: every kernel of the list that this CPU can run, bit-exact against the
// naive reference at awkward sizes, through the dispatcher with 1, 2 and 3 threads,
// with strided operands, and against a float dot product of the unpacked +-1 values.
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/bgemm/bgemm.h"
#include "core/bgemm/reference.h"
#include "core/common/threadpool.h"

namespace {

using bmx::word_t;

// Random packed rows with the tail bits beyond k cleared (the convention).
std::vector<word_t> random_rows(std::int64_t rows, std::int64_t k, std::int64_t ld, std::mt19937_64& rng) {
  const std::int64_t w = bmx::words_for_bits(k);
  std::vector<word_t> v(static_cast<std::size_t>(rows * ld), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t j = 0; j < w; ++j) v[static_cast<std::size_t>(r * ld + j)] = rng();
    if (w) v[static_cast<std::size_t>(r * ld + w - 1)] &= bmx::tail_mask(k);
    for (std::int64_t j = w; j < ld; ++j) v[static_cast<std::size_t>(r * ld + j)] = rng();  // junk past the row
  }
  return v;
}

const std::int64_t kK[] = {1, 63, 64, 65, 127, 128, 129, 255, 257, 4608};
const std::int64_t kMN[] = {1, 3, 7, 17, 33};

TEST(Bgemm, KernelListShape) {
  const auto& ks = bmx::bgemm_kernels();
  ASSERT_GE(ks.size(), 2u);
  EXPECT_STREQ(ks[0].name, "bgemm_1x1__reference");
  EXPECT_TRUE(ks[0].available());
  EXPECT_TRUE(bmx::bgemm_kernel("auto").available());
  EXPECT_THROW(bmx::bgemm_kernel("bgemm_9x9__nope"), std::invalid_argument);
  for (const auto& k : ks) {
    if (k.available()) {
      EXPECT_EQ(&bmx::bgemm_kernel(k.name), &k);
    } else {
      EXPECT_THROW(bmx::bgemm_kernel(k.name), std::invalid_argument);
    }
  }
}

TEST(Bgemm, EveryKernelBitExactAwkwardSizes) {
  for (const auto& kern : bmx::bgemm_kernels()) {
    if (!kern.available()) continue;
    for (std::int64_t k : kK) {
      for (std::int64_t m : kMN) {
        for (std::int64_t n : kMN) {
          const unsigned long long seed = 1000003ULL * static_cast<unsigned long long>(k) + 101ULL * m + n;
          std::mt19937_64 rng(seed);
          const std::int64_t w = bmx::words_for_bits(k);
          auto a = random_rows(m, k, w, rng);
          auto b = random_rows(n, k, w, rng);
          std::vector<std::int32_t> want(static_cast<std::size_t>(m * n)), got(static_cast<std::size_t>(m * n), -12345);
          bmx::ref::bgemm(a.data(), w, b.data(), w, 0, m, 0, n, w, static_cast<std::int32_t>(k), want.data(), n);
          kern.run(a.data(), w, b.data(), w, 0, m, 0, n, w, static_cast<std::int32_t>(k), got.data(), n);
          ASSERT_EQ(got, want) << kern.name << " M=" << m << " N=" << n << " K=" << k << " seed=" << seed;
        }
      }
    }
  }
}

TEST(Bgemm, SubRangesAndStrides) {
  // A kernel asked for rows [m0, m1) x cols [n0, n1) writes exactly that block.
  std::mt19937_64 rng(42);
  const std::int64_t m = 37, n = 29, k = 700, w = bmx::words_for_bits(k), lda = w + 3, ldb = w + 1, ldc = n + 5;
  auto a = random_rows(m, k, lda, rng);
  auto b = random_rows(n, k, ldb, rng);
  std::vector<std::int32_t> want(static_cast<std::size_t>(m * ldc), -7);
  bmx::ref::bgemm(a.data(), lda, b.data(), ldb, 0, m, 0, n, w, k, want.data(), ldc);
  for (const auto& kern : bmx::bgemm_kernels()) {
    if (!kern.available()) continue;
    std::vector<std::int32_t> got(static_cast<std::size_t>(m * ldc), -7);
    kern.run(a.data(), lda, b.data(), ldb, 5, 30, 3, 22, w, k, got.data(), ldc);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < ldc; ++j) {
        const bool inside = i >= 5 && i < 30 && j >= 3 && j < 22;
        ASSERT_EQ(got[static_cast<std::size_t>(i * ldc + j)], inside ? want[static_cast<std::size_t>(i * ldc + j)] : -7)
            << kern.name << " at " << i << "," << j << " seed=42";
      }
  }
}

TEST(Bgemm, ThreadsGiveIdenticalResults) {
  std::mt19937_64 rng(7);
  for (auto [m, n, k] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{64, 49, 2304},
                         {3, 301, 129},
                         {130, 5, 65},
                         {64, 196, 4608}}) {
    const std::int64_t w = bmx::words_for_bits(k);
    auto a = random_rows(m, k, w, rng);
    auto b = random_rows(n, k, w, rng);
    std::vector<std::int32_t> want(static_cast<std::size_t>(m * n));
    bmx::ref::bgemm(a.data(), w, b.data(), w, 0, m, 0, n, w, static_cast<std::int32_t>(k), want.data(), n);
    for (const auto& kern : bmx::bgemm_kernels()) {
      if (!kern.available() || std::string(kern.name).find("reference") != std::string::npos) continue;
      for (int threads : {1, 2, 3}) {
        bmx::ThreadPool pool(threads);
        std::vector<std::int32_t> got(static_cast<std::size_t>(m * n), 0);
        bmx::bgemm(a.data(), w, b.data(), w, m, n, w, static_cast<std::int32_t>(k), got.data(), n, &pool, &kern);
        ASSERT_EQ(got, want) << kern.name << " threads=" << threads << " M=" << m << " N=" << n << " K=" << k;
      }
    }
  }
}

TEST(Bgemm, MatchesFloatDotProduct) {
  // Independent oracle: unpack to +-1 floats and take the ordinary dot product.
  std::mt19937_64 rng(11);
  const std::int64_t m = 5, n = 6, k = 193, w = bmx::words_for_bits(k);
  auto a = random_rows(m, k, w, rng);
  auto b = random_rows(n, k, w, rng);
  std::vector<std::int32_t> got(static_cast<std::size_t>(m * n));
  bmx::bgemm(a.data(), w, b.data(), w, m, n, w, k, got.data(), n);
  auto val = [&](const std::vector<word_t>& v, std::int64_t r, std::int64_t i) {
    return ((v[static_cast<std::size_t>(r * w + i / 64)] >> (i % 64)) & 1) ? -1.0 : 1.0;
  };
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::int64_t t = 0; t < k; ++t) dot += val(a, i, t) * val(b, j, t);
      EXPECT_EQ(got[static_cast<std::size_t>(i * n + j)], static_cast<std::int32_t>(dot));
    }
}

TEST(Bgemm, ZeroWordsGivesK) {
  // Degenerate but legal: no words (k = 0) gives 0 everywhere; empty M or N is a no-op.
  std::vector<std::int32_t> c(6, -1);
  word_t dummy = 0;
  for (const auto& kern : bmx::bgemm_kernels()) {
    if (!kern.available()) continue;
    kern.run(&dummy, 0, &dummy, 0, 0, 2, 0, 3, 0, 0, c.data(), 3);
    for (auto v : c) EXPECT_EQ(v, 0) << kern.name;
  }
  bmx::bgemm(&dummy, 1, &dummy, 1, 0, 5, 1, 64, nullptr, 5);
}

TEST(Bgemm, PackedFormsMatchReference) {
  // pack_b + run_packed (filters packed at model load) and pack_b of A + run_packed_t (the
  // swapped form bgemm picks when N pads badly to the panel width), bit-exact at awkward
  // sizes, on every kernel that has them.
  for (const auto& kern : bmx::bgemm_kernels()) {
    if (!kern.available() || !kern.pack_b) continue;
    for (std::int64_t k : kK) {
      for (auto [m, n] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {17, 3}, {33, 49}, {64, 49}, {7, 65}, {48, 1}}) {
        const unsigned long long seed = 7919ULL * static_cast<unsigned long long>(k) + 31ULL * m + n;
        std::mt19937_64 rng(seed);
        const std::int64_t w = bmx::words_for_bits(k), lda = w + 2;
        auto a = random_rows(m, k, lda, rng);
        auto b = random_rows(n, k, w, rng);
        std::vector<std::int32_t> want(static_cast<std::size_t>(m * n));
        bmx::ref::bgemm(a.data(), lda, b.data(), w, 0, m, 0, n, w, static_cast<std::int32_t>(k), want.data(), n);
        std::vector<word_t> pb(static_cast<std::size_t>(kern.packed_b_words(n, w)), ~word_t{0});
        kern.pack_b(b.data(), w, n, w, pb.data());
        std::vector<std::int32_t> got(static_cast<std::size_t>(m * n), -1);
        kern.run_packed(a.data(), lda, pb.data(), 0, m, 0, n, w, static_cast<std::int32_t>(k), got.data(), n);
        ASSERT_EQ(got, want) << kern.name << " run_packed M=" << m << " N=" << n << " K=" << k << " seed=" << seed;
        // A block [m0, m1) x [n0, n1) with n0 on a panel boundary: only that block is written.
        if (n > kern.panel && m > 2) {
          const std::int64_t m0 = 1, m1 = m - 1, n0 = kern.panel;
          std::fill(got.begin(), got.end(), -1);
          kern.run_packed(a.data(), lda, pb.data(), m0, m1, n0, n, w, static_cast<std::int32_t>(k), got.data(), n);
          for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) {
              const bool inside = i >= m0 && i < m1 && j >= n0;
              ASSERT_EQ(got[i * n + j], inside ? want[i * n + j] : -1)
                  << kern.name << " run_packed block, (" << i << ", " << j << ") M=" << m << " N=" << n << " K=" << k
                  << " seed=" << seed;
            }
        }
        if (!kern.run_packed_t) continue;
        std::vector<word_t> pa(static_cast<std::size_t>(kern.packed_b_words(m, w)), ~word_t{0});
        kern.pack_b(a.data(), lda, m, w, pa.data());
        std::fill(got.begin(), got.end(), -1);
        kern.run_packed_t(b.data(), w, pa.data(), 0, m, 0, n, w, static_cast<std::int32_t>(k), got.data(), n);
        ASSERT_EQ(got, want) << kern.name << " run_packed_t M=" << m << " N=" << n << " K=" << k << " seed=" << seed;
      }
    }
  }
}

TEST(Bgemm, SwappedFormThroughDispatcher) {
  // Shapes where bgemm takes the swapped form (M pads to the panel better than N), with 1-3
  // threads, M not a multiple of the panel, and ldc wider than N (C written transposed
  // per tile), on every kernel that has the form.
  std::mt19937_64 rng(2024);
  for (auto [m, n, k] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{64, 49, 2304},
                         {40, 33, 129},
                         {48, 17, 65},
                         {17, 1, 4608},
                         {96, 9, 63}}) {
    const std::int64_t w = bmx::words_for_bits(k), ldc = n + 3;
    auto a = random_rows(m, k, w, rng);
    auto b = random_rows(n, k, w, rng);
    std::vector<std::int32_t> want(static_cast<std::size_t>(m * ldc), -9);
    bmx::ref::bgemm(a.data(), w, b.data(), w, 0, m, 0, n, w, static_cast<std::int32_t>(k), want.data(), ldc);
    for (const auto& kern : bmx::bgemm_kernels()) {
      if (!kern.available() || !kern.run_packed_t) continue;
      for (int threads : {1, 2, 3}) {
        bmx::ThreadPool pool(threads);
        for (int rep = 0; rep < 3; ++rep) {  // repeated calls reuse the packing buffers
          std::vector<std::int32_t> got(static_cast<std::size_t>(m * ldc), -9);
          bmx::bgemm(a.data(), w, b.data(), w, m, n, w, static_cast<std::int32_t>(k), got.data(), ldc, &pool,
                     &kern);
          ASSERT_EQ(got, want) << kern.name << " threads=" << threads << " M=" << m << " N=" << n << " K=" << k;
        }
      }
    }
  }
}

}  // namespace
