// k-bit bit-plane GEMM: every kernel of the list that this CPU can run, bit-exact against
// the naive reference at awkward sizes for every plane-count pair, through the dispatcher
// with 1-3 threads, with strided operands, at the int32 limit, and against a plain integer
// dot product of values whose bit planes the test packs itself; kernels with a packed-B
// form also through kbgemm_pack_b / kbgemm_packed and their run_packed sub-ranges.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "core/common/threadpool.h"
#include "core/kbgemm/kbgemm.h"
#include "core/kbgemm/reference.h"

namespace {

using bmx::word_t;

// `rows` rows of `planes` random bit planes of k bits (tails cleared), row stride ld
// words; the words past the planes are junk that no kernel may read.
std::vector<word_t> random_planes(std::int64_t rows, int planes, std::int64_t k, std::int64_t ld,
                                  std::mt19937_64& rng) {
  const std::int64_t w = bmx::words_for_bits(k);
  std::vector<word_t> v(static_cast<std::size_t>(std::max<std::int64_t>(rows * ld, 1)), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int p = 0; p < planes; ++p) {
      word_t* row = v.data() + r * ld + p * w;
      for (std::int64_t j = 0; j < w; ++j) row[j] = rng();
      if (w) row[w - 1] &= bmx::tail_mask(k);
    }
    for (std::int64_t j = planes * w; j < ld; ++j) v[static_cast<std::size_t>(r * ld + j)] = rng();
  }
  return v;
}

// Bit planes of unsigned integers u (rows x k, values < 2^planes), packed by hand.
std::vector<word_t> pack_planes(const std::vector<int>& u, std::int64_t rows, std::int64_t k, int planes,
                                std::int64_t ld) {
  const std::int64_t w = bmx::words_for_bits(k);
  std::vector<word_t> v(static_cast<std::size_t>(rows * ld), 0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (int p = 0; p < planes; ++p)
      for (std::int64_t e = 0; e < k; ++e)
        if ((u[static_cast<std::size_t>(r * k + e)] >> p) & 1)
          v[static_cast<std::size_t>(r * ld + p * w + e / 64)] |= word_t{1} << (e % 64);
  return v;
}

const std::int64_t kK[] = {1, 63, 64, 65, 127, 128, 129, 4608};
const std::int64_t kMN[] = {1, 3, 7, 17, 33};

TEST(Kbgemm, KernelListShape) {
  const auto& ks = bmx::kbgemm_kernels();
  ASSERT_GE(ks.size(), 2u);
  EXPECT_STREQ(ks[0].name, "kbgemm_1x1__reference");
  EXPECT_TRUE(ks[0].available());
  EXPECT_TRUE(bmx::kbgemm_kernel("auto").available());
  for (const auto& k : ks) {
    if (k.available()) {
      EXPECT_EQ(&bmx::kbgemm_kernel(k.name), &k);
    } else {
      EXPECT_THROW(bmx::kbgemm_kernel(k.name), std::invalid_argument);
    }
  }
}

TEST(Kbgemm, BadArgumentsRaise) {
  try {
    bmx::kbgemm_kernel("kbgemm_9x9__nope");
    FAIL() << "unknown kernel name accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("kbgemm_1x1__reference"), std::string::npos) << e.what();
  }
  EXPECT_THROW(bmx::kbgemm_kernel("bgemm_1x1__reference"), std::invalid_argument);
  word_t a[8] = {}, b[8] = {};
  std::int32_t c[4] = {};
  for (auto [pa, pb] : {std::pair<int, int>{0, 1}, {1, 0}, {5, 1}, {1, 5}, {-1, 2}, {4, 9}})
    EXPECT_THROW(bmx::kbgemm(a, 8, b, 8, 1, 1, 1, pa, pb, c, 1), std::invalid_argument) << pa << " " << pb;
  EXPECT_THROW(bmx::kbgemm(a, 1, b, 8, 1, 1, 1, 2, 2, c, 1), std::invalid_argument);  // lda < pa * words
  EXPECT_THROW(bmx::kbgemm(a, 8, b, 1, 1, 1, 1, 2, 2, c, 1), std::invalid_argument);  // ldb < pb * words
  EXPECT_THROW(bmx::kbgemm(a, 8, b, 8, 1, 1, -1, 2, 2, c, 1), std::invalid_argument);
  EXPECT_THROW(bmx::kbgemm(a, 8, b, 8, 1, 1, bmx::kbgemm_max_words(4, 4) + 1, 4, 4, c, 1), std::invalid_argument);
  for (int pa : {0, 5}) EXPECT_THROW(bmx::kbit_row_sums(a, 8, 1, 1, pa, c), std::invalid_argument) << pa;
  EXPECT_THROW(bmx::kbit_row_sums(a, 1, 1, 1, 2, c), std::invalid_argument);
}

TEST(Kbgemm, EveryKernelBitExactAwkwardSizes) {
  // Every k, every (pa, pb) in 1..4 x 1..4 and every M, N; some rows strided past their
  // planes (junk there) and C with a wider row stride. The reference runs once per case.
  for (std::int64_t k : kK) {
    const std::int64_t w = bmx::words_for_bits(k);
    for (int pa = 1; pa <= 4; ++pa)
      for (int pb = 1; pb <= 4; ++pb)
        for (std::int64_t m : kMN)
          for (std::int64_t n : kMN) {
            const unsigned long long seed = 1000003ULL * k + 10007ULL * (pa * 5 + pb) + 101ULL * m + n;
            std::mt19937_64 rng(seed);
            const std::int64_t lda = pa * w + (m + n) % 3, ldb = pb * w + (m * n) % 2, ldc = n + (m % 2);
            auto a = random_planes(m, pa, k, lda, rng);
            auto b = random_planes(n, pb, k, ldb, rng);
            std::vector<std::int32_t> want(static_cast<std::size_t>(m * ldc), -12345);
            bmx::ref::kbgemm(a.data(), lda, b.data(), ldb, 0, m, 0, n, w, pa, pb, want.data(), ldc);
            for (const auto& kern : bmx::kbgemm_kernels()) {
              if (!kern.available() || kern.run == bmx::kbgemm_kernels()[0].run) continue;
              std::vector<std::int32_t> got(static_cast<std::size_t>(m * ldc), -12345);
              kern.run(a.data(), lda, b.data(), ldb, 0, m, 0, n, w, pa, pb, got.data(), ldc);
              ASSERT_EQ(got, want) << kern.name << " M=" << m << " N=" << n << " k=" << k << " pa=" << pa
                                   << " pb=" << pb << " lda=" << lda << " ldb=" << ldb << " seed=" << seed;
              if (!kern.run_packed) continue;
              const auto packed = bmx::kbgemm_pack_b(kern, b.data(), ldb, n, w, pb);
              ASSERT_EQ(static_cast<std::int64_t>(packed.size()), kern.packed_b_words(n, w, pb)) << kern.name;
              std::fill(got.begin(), got.end(), -12345);
              bmx::kbgemm_packed(a.data(), lda, packed.data(), m, n, w, pa, pb, got.data(), ldc, nullptr, kern);
              ASSERT_EQ(got, want) << kern.name << " packed M=" << m << " N=" << n << " k=" << k << " pa=" << pa
                                   << " pb=" << pb << " seed=" << seed;
            }
          }
  }
}

TEST(Kbgemm, SubRangesWriteOnlyTheirBlock) {
  std::mt19937_64 rng(42);
  const std::int64_t m = 37, n = 29, k = 700, w = bmx::words_for_bits(k), ldc = n + 5;
  const int pa = 3, pb = 2;
  const std::int64_t lda = pa * w + 3, ldb = pb * w + 1;
  auto a = random_planes(m, pa, k, lda, rng);
  auto b = random_planes(n, pb, k, ldb, rng);
  std::vector<std::int32_t> want(static_cast<std::size_t>(m * ldc), -7);
  bmx::ref::kbgemm(a.data(), lda, b.data(), ldb, 0, m, 0, n, w, pa, pb, want.data(), ldc);
  for (const auto& kern : bmx::kbgemm_kernels()) {
    if (!kern.available()) continue;
    std::vector<std::int32_t> got(static_cast<std::size_t>(m * ldc), -7);
    kern.run(a.data(), lda, b.data(), ldb, 5, 30, 3, 22, w, pa, pb, got.data(), ldc);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < ldc; ++j) {
        const bool inside = i >= 5 && i < 30 && j >= 3 && j < 22;
        ASSERT_EQ(got[static_cast<std::size_t>(i * ldc + j)], inside ? want[static_cast<std::size_t>(i * ldc + j)] : -7)
            << kern.name << " at " << i << "," << j << " seed=42";
      }
  }
}

TEST(Kbgemm, PackedSubRangesAndErrors) {
  // run_packed on panel-aligned column ranges writes only its block; kernels without a
  // packed form give an empty pack and a clear error; bad arguments raise as in kbgemm.
  std::mt19937_64 rng(43);
  const std::int64_t m = 37, n = 45, k = 700, w = bmx::words_for_bits(k), ldc = n + 3;
  const int pa = 3, pb = 4;
  const std::int64_t lda = pa * w + 2, ldb = pb * w + 1;
  auto a = random_planes(m, pa, k, lda, rng);
  auto b = random_planes(n, pb, k, ldb, rng);
  std::vector<std::int32_t> want(static_cast<std::size_t>(m * ldc), -7);
  bmx::ref::kbgemm(a.data(), lda, b.data(), ldb, 0, m, 0, n, w, pa, pb, want.data(), ldc);
  for (const auto& kern : bmx::kbgemm_kernels()) {
    if (!kern.available()) continue;
    if (!kern.run_packed) {
      EXPECT_TRUE(bmx::kbgemm_pack_b(kern, b.data(), ldb, n, w, pb).empty()) << kern.name;
      EXPECT_THROW(bmx::kbgemm_packed(a.data(), lda, b.data(), m, n, w, pa, pb, want.data(), ldc, nullptr, kern),
                   std::invalid_argument)
          << kern.name;
      continue;
    }
    ASSERT_GT(kern.panel, 0);
    ASSERT_EQ(16 % kern.panel, 0) << kern.name;
    const auto packed = bmx::kbgemm_pack_b(kern, b.data(), ldb, n, w, pb);
    const std::int64_t n0 = kern.panel, n1 = std::min<std::int64_t>(n, 2 * kern.panel + 5);
    std::vector<std::int32_t> got(static_cast<std::size_t>(m * ldc), -7);
    kern.run_packed(a.data(), lda, packed.data(), 5, 30, n0, n1, w, pa, pb, got.data(), ldc);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < ldc; ++j) {
        const bool inside = i >= 5 && i < 30 && j >= n0 && j < n1;
        ASSERT_EQ(got[static_cast<std::size_t>(i * ldc + j)], inside ? want[static_cast<std::size_t>(i * ldc + j)] : -7)
            << kern.name << " at " << i << "," << j << " seed=43";
      }
    std::int32_t c[4] = {};
    EXPECT_THROW(bmx::kbgemm_pack_b(kern, b.data(), ldb, n, w, 5), std::invalid_argument);
    EXPECT_THROW(bmx::kbgemm_pack_b(kern, b.data(), ldb, -1, w, pb), std::invalid_argument);
    EXPECT_THROW(bmx::kbgemm_pack_b(kern, b.data(), pb * w - 1, n, w, pb), std::invalid_argument);
    EXPECT_THROW(bmx::kbgemm_packed(a.data(), lda, packed.data(), 1, 1, w, 0, pb, c, 1, nullptr, kern),
                 std::invalid_argument);
    EXPECT_THROW(bmx::kbgemm_packed(a.data(), pa * w - 1, packed.data(), 1, 1, w, pa, pb, c, 1, nullptr, kern),
                 std::invalid_argument);
    EXPECT_THROW(bmx::kbgemm_packed(a.data(), lda, packed.data(), 1, 2, w, pa, pb, c, 1, nullptr, kern),
                 std::invalid_argument);  // ldc < n
  }
}

TEST(Kbgemm, ThreadsGiveIdenticalResults) {
  std::mt19937_64 rng(7);
  for (auto [m, n, k, pa, pb] : {std::tuple<std::int64_t, std::int64_t, std::int64_t, int, int>{64, 49, 2304, 2, 3},
                                 {3, 301, 129, 4, 4},
                                 {130, 5, 65, 1, 2},
                                 {40, 40, 4608, 4, 1}}) {
    const std::int64_t w = bmx::words_for_bits(k);
    auto a = random_planes(m, pa, k, pa * w, rng);
    auto b = random_planes(n, pb, k, pb * w, rng);
    std::vector<std::int32_t> want(static_cast<std::size_t>(m * n));
    bmx::ref::kbgemm(a.data(), pa * w, b.data(), pb * w, 0, m, 0, n, w, pa, pb, want.data(), n);
    for (const auto& kern : bmx::kbgemm_kernels()) {
      if (!kern.available()) continue;
      for (int threads : {1, 2, 3}) {
        bmx::ThreadPool pool(threads);
        std::vector<std::int32_t> got(static_cast<std::size_t>(m * n), 0);
        bmx::kbgemm(a.data(), pa * w, b.data(), pb * w, m, n, w, pa, pb, got.data(), n, &pool, &kern);
        ASSERT_EQ(got, want) << kern.name << " threads=" << threads << " M=" << m << " N=" << n << " k=" << k
                             << " pa=" << pa << " pb=" << pb;
        if (!kern.run_packed) continue;
        const auto packed = bmx::kbgemm_pack_b(kern, b.data(), pb * w, n, w, pb);
        std::fill(got.begin(), got.end(), 0);
        bmx::kbgemm_packed(a.data(), pa * w, packed.data(), m, n, w, pa, pb, got.data(), n, &pool, kern);
        ASSERT_EQ(got, want) << kern.name << " packed threads=" << threads << " M=" << m << " N=" << n;
      }
    }
  }
}

TEST(Kbgemm, MatchesIntegerDotProduct) {
  // Independent oracle: integers U_a in [0, 2^pa), U_b in [0, 2^pb), planes packed here,
  // C = U_a U_b^T in plain integer arithmetic; row sums = sum of U_a over the row.
  const std::int64_t m = 5, n = 6, k = 193, w = bmx::words_for_bits(k);
  for (int pa = 1; pa <= 4; ++pa)
    for (int pb = 1; pb <= 4; ++pb) {
      const unsigned seed = 11u + 4u * pa + pb;
      std::mt19937 rng(seed);
      std::vector<int> ua(static_cast<std::size_t>(m * k)), ub(static_cast<std::size_t>(n * k));
      for (auto& v : ua) v = static_cast<int>(rng() % (1u << pa));
      for (auto& v : ub) v = static_cast<int>(rng() % (1u << pb));
      ua[0] = (1 << pa) - 1, ub[0] = (1 << pb) - 1;  // the largest values occur
      const std::int64_t lda = pa * w + 1;
      auto a = pack_planes(ua, m, k, pa, lda);
      auto b = pack_planes(ub, n, k, pb, pb * w);
      for (const auto& kern : bmx::kbgemm_kernels()) {
        if (!kern.available()) continue;
        std::vector<std::int32_t> got(static_cast<std::size_t>(m * n), -1);
        bmx::kbgemm(a.data(), lda, b.data(), pb * w, m, n, w, pa, pb, got.data(), n, nullptr, &kern);
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t j = 0; j < n; ++j) {
            std::int64_t dot = 0;
            for (std::int64_t e = 0; e < k; ++e)
              dot += ua[static_cast<std::size_t>(i * k + e)] * ub[static_cast<std::size_t>(j * k + e)];
            ASSERT_EQ(got[static_cast<std::size_t>(i * n + j)], dot)
                << kern.name << " (" << i << ", " << j << ") pa=" << pa << " pb=" << pb << " seed=" << seed;
          }
      }
      std::vector<std::int32_t> sums(static_cast<std::size_t>(m), -1), ref_sums(static_cast<std::size_t>(m), -1);
      bmx::kbit_row_sums(a.data(), lda, m, w, pa, sums.data());
      bmx::ref::kbit_row_sums(a.data(), lda, m, w, pa, ref_sums.data());
      for (std::int64_t i = 0; i < m; ++i) {
        std::int64_t s = 0;
        for (std::int64_t e = 0; e < k; ++e) s += ua[static_cast<std::size_t>(i * k + e)];
        EXPECT_EQ(sums[static_cast<std::size_t>(i)], s) << "row " << i << " pa=" << pa << " seed=" << seed;
        EXPECT_EQ(ref_sums[static_cast<std::size_t>(i)], s) << "row " << i << " pa=" << pa << " seed=" << seed;
      }
    }
}

TEST(Kbgemm, RowSumsMatchReferenceAtAwkwardSizes) {
  for (std::int64_t k : kK)
    for (int pa = 1; pa <= 4; ++pa) {
      const unsigned long long seed = 31ULL * k + pa;
      std::mt19937_64 rng(seed);
      const std::int64_t m = 17, w = bmx::words_for_bits(k), lda = pa * w + 2;
      auto a = random_planes(m, pa, k, lda, rng);
      std::vector<std::int32_t> got(m, -1), want(m, -1);
      bmx::kbit_row_sums(a.data(), lda, m, w, pa, got.data());
      bmx::ref::kbit_row_sums(a.data(), lda, m, w, pa, want.data());
      ASSERT_EQ(got, want) << "k=" << k << " pa=" << pa << " seed=" << seed;
    }
}

TEST(Kbgemm, LargestWordCountStaysExact) {
  // All bits set at the word count where C just fits int32: no accumulator may wrap
  // (8- and 16-bit lanes flushed in time, plane-pair weights applied in 64 bits).
  // (Fewer planes allow longer rows: 4 x 4 and 3 x 4 keep the buffers at ~10-20 MB.)
  for (auto [pa, pb, m, n] : {std::tuple<int, int, std::int64_t, std::int64_t>{4, 4, 2, 5}, {3, 4, 2, 2}}) {
    const std::int64_t w = bmx::kbgemm_max_words(pa, pb);
    std::vector<word_t> a(static_cast<std::size_t>(m * pa * w), ~word_t{0});
    std::vector<word_t> b(static_cast<std::size_t>(n * pb * w), ~word_t{0});
    const std::int64_t want = w * 64 * ((std::int64_t{1} << pa) - 1) * ((std::int64_t{1} << pb) - 1);
    ASSERT_LE(want, std::int64_t{2147483647});
    for (const auto& kern : bmx::kbgemm_kernels()) {
      if (!kern.available() || kern.run == bmx::kbgemm_kernels()[0].run) continue;
      std::vector<std::int32_t> c(static_cast<std::size_t>(m * n), -1);
      bmx::kbgemm(a.data(), pa * w, b.data(), pb * w, m, n, w, pa, pb, c.data(), n, nullptr, &kern);
      for (auto v : c) ASSERT_EQ(v, want) << kern.name << " pa=" << pa << " pb=" << pb << " words=" << w;
    }
  }
}

TEST(Kbgemm, ZeroWordsAndEmptyShapes) {
  std::vector<std::int32_t> c(6, -1);
  word_t dummy = 0;
  for (const auto& kern : bmx::kbgemm_kernels()) {
    if (!kern.available()) continue;
    kern.run(&dummy, 0, &dummy, 0, 0, 2, 0, 3, 0, 4, 4, c.data(), 3);
    for (auto v : c) EXPECT_EQ(v, 0) << kern.name;
    if (!kern.run_packed) continue;
    std::fill(c.begin(), c.end(), -1);
    const auto packed = bmx::kbgemm_pack_b(kern, &dummy, 0, 3, 0, 4);
    bmx::kbgemm_packed(&dummy, 0, packed.data(), 2, 3, 0, 4, 4, c.data(), 3, nullptr, kern);
    for (auto v : c) EXPECT_EQ(v, 0) << kern.name << " packed";
  }
  bmx::kbgemm(&dummy, 1, &dummy, 1, 0, 5, 1, 1, 1, nullptr, 5);
  bmx::kbgemm(&dummy, 1, &dummy, 1, 5, 0, 1, 1, 1, nullptr, 0);
}

}  // namespace
