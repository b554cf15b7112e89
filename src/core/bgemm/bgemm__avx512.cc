// AVX-512 binary GEMM with VPOPCNTDQ: per 512 bits of one (m, n) pair the loop does
// xor + vpopcntq + vpaddq, on a 4x4 register tile (16 accumulators, 8 operand registers
// of the 32). The word tail of K is read with masked loads, so rows need no padding.
// A block of A rows (~256 KiB) stays in L2 while each 4-row panel of B (L1) meets it.
#include <immintrin.h>

#include <algorithm>

#include "core/bgemm/kernels.h"

// GCC 12's AVX-512 headers build zero/undefined vectors in a way that trips
// -Wuninitialized inside the intrinsics themselves (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bmx::kernels {

namespace {

constexpr int kStepWords = 8;  // 512 bits

// (not _mm512_reduce_add_epi64: GCC 12 warns about its undefined upper half)
inline std::int64_t hsum(__m512i v) {
  alignas(64) std::int64_t t[8];
  _mm512_store_si512(t, v);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

// Four 64-bit-lane totals (values < 2^31) to their four horizontal sums as int32.
inline __m128i hsum4(__m512i x0, __m512i x1, __m512i x2, __m512i x3) {
  const __m512i y = _mm512_or_si512(x0, _mm512_slli_epi64(x1, 32));  // [a b a b ...]
  const __m512i z = _mm512_or_si512(x2, _mm512_slli_epi64(x3, 32));  // [c d c d ...]
  const __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(y, z), _mm512_unpackhi_epi64(y, z));
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// MR x NR tile over all words. Leftover words (words % 8) up to kTransposedMax go through
// a transposed path (the NR rows of B in the lanes of one ymm, each A word broadcast:
// 3 uops per row and word instead of a masked 512-bit step of 3 * MR * NR uops);
// more leftovers take one masked step.
constexpr std::int64_t kTransposedMax = 3;

template <int MR, int NR>
inline void tile(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t words,
                 std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const std::int64_t full = words / kStepWords;
  const std::int64_t rem = words % kStepWords;
  std::int64_t w = 0;
  for (std::int64_t s = 0; s < full; ++s, w += kStepWords) {
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = _mm512_loadu_si512(a + i * lda + w);
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_loadu_si512(b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
  }
  const bool transposed = NR == 4 && rem > 0 && rem <= kTransposedMax;
  if (rem > 0 && !transposed) {
    const __mmask8 mask = static_cast<__mmask8>((1u << rem) - 1);
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = _mm512_maskz_loadu_epi64(mask, a + i * lda + w);
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_maskz_loadu_epi64(mask, b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
  }
  if constexpr (NR == 4) {
    __m256i u[MR];
    for (int i = 0; i < MR; ++i) u[i] = _mm256_setzero_si256();
    if (transposed) {
      for (std::int64_t t = w; t < words; ++t) {
        const __m256i bt = _mm256_set_epi64x(static_cast<long long>(b[3 * ldb + t]), static_cast<long long>(b[2 * ldb + t]),
                                             static_cast<long long>(b[ldb + t]), static_cast<long long>(b[t]));
        for (int i = 0; i < MR; ++i)
          u[i] = _mm256_add_epi64(
              u[i], _mm256_popcnt_epi64(_mm256_xor_si256(_mm256_set1_epi64x(static_cast<long long>(a[i * lda + t])), bt)));
      }
    }
    const __m128i k = _mm_set1_epi32(k_bits);
    for (int i = 0; i < MR; ++i) {
      const __m128i pc = _mm_add_epi32(hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]), _mm256_cvtepi64_epi32(u[i]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i * ldc), _mm_sub_epi32(k, _mm_slli_epi32(pc, 1)));
    }
  } else {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        c[i * ldc + j] = xnor_dot(k_bits, static_cast<std::int32_t>(hsum(acc[i][j])));
  }
}

template <int MR>
inline void row_tiles(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t j0,
                      std::int64_t j1, std::int64_t words, std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  std::int64_t j = j0;
  for (; j + 4 <= j1; j += 4) tile<MR, 4>(a, lda, b + j * ldb, ldb, words, k_bits, c + j, ldc);
  for (; j < j1; ++j) tile<MR, 1>(a, lda, b + j * ldb, ldb, words, k_bits, c + j, ldc);
}

}  // namespace

void bgemm_4x4__avx512(BMX_BGEMM_ARGS) {
  if (m1 <= m0 || n1 <= n0) return;
  const std::int64_t row_bytes = std::max<std::int64_t>(words, 1) * 8;
  const std::int64_t mc = std::max<std::int64_t>(4, (256 * 1024 / row_bytes) / 4 * 4);
  const std::int64_t nc = 4;  // one B panel at a time
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t nb = n0; nb < n1; nb += nc) {
      const std::int64_t ne = std::min(n1, nb + nc);
      std::int64_t i = mb;
      for (; i + 4 <= me; i += 4) row_tiles<4>(a + i * lda, lda, b, ldb, nb, ne, words, k_bits, c + i * ldc, ldc);
      for (; i < me; ++i) row_tiles<1>(a + i * lda, lda, b, ldb, nb, ne, words, k_bits, c + i * ldc, ldc);
    }
  }
}

}  // namespace bmx::kernels
