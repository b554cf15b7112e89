// AVX-512 binary GEMM with VPOPCNTDQ: per 512 bits of one (m, n) pair the loop does
// xor + vpopcntq + vpaddq, on a 4x4 register tile (16 accumulators, 8 operand registers
// of the 32). The word tail of K is read with masked loads, so rows need no padding.
// A block of A rows (~256 KiB) stays in L2 while each 4-row panel of B (L1) meets it.
#include <immintrin.h>

#include <algorithm>

#include "core/bgemm/kernels.h"

namespace bmx::kernels {

namespace {

constexpr int kStepWords = 8;  // 512 bits

// (not _mm512_reduce_add_epi64: GCC 12 warns about its undefined upper half)
inline std::int64_t hsum(__m512i v) {
  alignas(64) std::int64_t t[8];
  _mm512_store_si512(t, v);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

template <int MR, int NR>
inline void tile(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t words,
                 std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const std::int64_t full = words / kStepWords;
  std::int64_t w = 0;
  for (std::int64_t s = 0; s < full; ++s, w += kStepWords) {
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = _mm512_loadu_si512(a + i * lda + w);
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_loadu_si512(b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
  }
  if (w < words) {
    const __mmask8 mask = static_cast<__mmask8>((1u << (words - w)) - 1);
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = _mm512_maskz_loadu_epi64(mask, a + i * lda + w);
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_maskz_loadu_epi64(mask, b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      c[i * ldc + j] = xnor_dot(k_bits, static_cast<std::int32_t>(hsum(acc[i][j])));
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
