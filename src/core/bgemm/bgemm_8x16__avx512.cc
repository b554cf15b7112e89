// AVX-512 VPOPCNTDQ binary GEMM in "transposed B" form: a panel of 16 B rows is stored
// word-major ([word][16 rows], two zmm per word), each A word is broadcast from memory
// into vpxorq ({1to8}), and each 64-bit lane accumulates one output. Per 8 pairs and word:
// vpxorq (with the broadcast load) + vpopcntq + vpaddq, the same 3 uops per 512 binary
// MACs as the row-major kernel, but with no horizontal sums at the end and no padding of
// K to 512 bits: for K = 576 (9 words) the row-major kernel spends about half its time in
// reductions and the leftover word. Tile: 8 rows of A x 16 rows of B (16 accumulators).
#include <immintrin.h>

#include <algorithm>

#include "core/bgemm/kernels.h"
#include "core/common/scratch.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 AVX-512 header false positive
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bmx::kernels {

namespace {

constexpr int kPanel = 16;  // B rows per panel (two zmm of 8 lanes)
constexpr int kMaxMR = 8;


// In-register transpose of an 8x8 int32 block (rows r[0..7] become columns).
inline void transpose8x8(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
  }
}

// MR rows of A (at a, stride lda) against one transposed panel; writes `nv` columns.
// TWO = false: the panel has at most 8 valid rows, the upper zmm is skipped.
// TRANS = true: the result is stored transposed, element (row i, panel column j) at
// c[j * ldc + i] (the swapped form of bgemm, where the panel holds rows of the GEMM's A).
template <int MR, bool TWO, bool TRANS>
inline void tile_impl(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t words, std::int32_t k_bits,
                 std::int32_t* c, std::int64_t ldc, int nv) {
  __m512i lo[MR], hi[MR];
  for (int i = 0; i < MR; ++i) lo[i] = hi[i] = _mm512_setzero_si512();
  const word_t* bp = panel;
  for (std::int64_t w = 0; w < words; ++w, bp += kPanel) {
    const __m512i b0 = _mm512_loadu_si512(bp), b1 = TWO ? _mm512_loadu_si512(bp + 8) : b0;
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi64(static_cast<long long>(a[i * lda + w]));
      lo[i] = _mm512_add_epi64(lo[i], _mm512_popcnt_epi64(_mm512_xor_si512(av, b0)));
      if (TWO) hi[i] = _mm512_add_epi64(hi[i], _mm512_popcnt_epi64(_mm512_xor_si512(av, b1)));
    }
  }
  const __m256i k = _mm256_set1_epi32(k_bits);
  if constexpr (TRANS) {
    const __mmask8 rows = static_cast<__mmask8>((1u << MR) - 1);
    for (int half = 0; half < (TWO ? 2 : 1); ++half) {
      __m256i r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = i < MR ? _mm256_sub_epi32(k, _mm256_slli_epi32(_mm512_cvtepi64_epi32(half ? hi[i] : lo[i]), 1))
                      : _mm256_setzero_si256();
      transpose8x8(r);
      const int cols = std::min(8, nv - 8 * half);
      for (int j = 0; j < cols; ++j) _mm256_mask_storeu_epi32(c + (8 * half + j) * ldc, rows, r[j]);
    }
    return;
  }
  const __mmask8 m0 = static_cast<__mmask8>(nv >= 8 ? 0xff : (1u << nv) - 1);
  const __mmask8 m1 = static_cast<__mmask8>(nv >= 16 ? 0xff : nv <= 8 ? 0 : (1u << (nv - 8)) - 1);
  for (int i = 0; i < MR; ++i) {
    const __m256i r0 = _mm256_sub_epi32(k, _mm256_slli_epi32(_mm512_cvtepi64_epi32(lo[i]), 1));
    const __m256i r1 = _mm256_sub_epi32(k, _mm256_slli_epi32(_mm512_cvtepi64_epi32(hi[i]), 1));
    _mm256_mask_storeu_epi32(c + i * ldc, m0, r0);
    if (TWO && m1) _mm256_mask_storeu_epi32(c + i * ldc + 8, m1, r1);
  }
}

template <int MR, bool TRANS>
inline void tile(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t words, std::int32_t k_bits,
                 std::int32_t* c, std::int64_t ldc, int nv) {
  if (nv > 8)
    tile_impl<MR, true, TRANS>(a, lda, panel, words, k_bits, c, ldc, nv);
  else
    tile_impl<MR, false, TRANS>(a, lda, panel, words, k_bits, c, ldc, nv);
}

template <int MR, bool TRANS>
void rows_tail(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t words, std::int32_t k_bits,
               std::int32_t* c, std::int64_t ldc, int nv, int rows) {
  if constexpr (MR > 0) {
    if (rows == MR) {
      tile<MR, TRANS>(a, lda, panel, words, k_bits, c, ldc, nv);
      return;
    }
    rows_tail<MR - 1, TRANS>(a, lda, panel, words, k_bits, c, ldc, nv, rows);
  }
}

}  // namespace

namespace {

// Panel of 16 B rows starting at row nb (nv valid), word-major: word w of row r at
// panel[w * 16 + r], missing rows 0. Two 8-row gathers per word.
inline void transpose_panel(const word_t* b, std::int64_t ldb, std::int64_t nb, int nv, std::int64_t words,
                            word_t* panel) {
  const long long l = ldb;
  const __m512i off0 = _mm512_setr_epi64(0, l, 2 * l, 3 * l, 4 * l, 5 * l, 6 * l, 7 * l);
  const __m512i off1 = _mm512_add_epi64(off0, _mm512_set1_epi64(8 * l));
  const __mmask8 g0 = static_cast<__mmask8>(nv >= 8 ? 0xff : (1u << nv) - 1);
  const __mmask8 g1 = static_cast<__mmask8>(nv >= 16 ? 0xff : nv <= 8 ? 0 : (1u << (nv - 8)) - 1);
  const word_t* base = b + nb * ldb;
  for (std::int64_t w = 0; w < words; ++w) {
    const auto* p = reinterpret_cast<const long long*>(base + w);
    _mm512_storeu_si512(panel + w * kPanel, _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), g0, off0, p, 8));
    _mm512_storeu_si512(panel + w * kPanel + 8, _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), g1, off1, p, 8));
  }
}

// Rows [mb, me) of A against one panel (panel columns nb.. of C; TRANS: C rows nb..).
template <bool TRANS = false>
inline void rows_panel(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t mb, std::int64_t me,
                       std::int64_t nb, int nv, std::int64_t words, std::int32_t k_bits, std::int32_t* c,
                       std::int64_t ldc) {
  auto at = [&](std::int64_t i) { return TRANS ? c + nb * ldc + i : c + i * ldc + nb; };
  std::int64_t i = mb;
  for (; i + kMaxMR <= me; i += kMaxMR) tile<kMaxMR, TRANS>(a + i * lda, lda, panel, words, k_bits, at(i), ldc, nv);
  if (i < me)
    rows_tail<kMaxMR - 1, TRANS>(a + i * lda, lda, panel, words, k_bits, at(i), ldc, nv, static_cast<int>(me - i));
}

// A rows are read in place; keep a block of them (~256 KiB) in L2 while panels pass.
inline std::int64_t row_block(std::int64_t words) {
  const std::int64_t row_bytes = std::max<std::int64_t>(words, 1) * 8;
  return std::max<std::int64_t>(kMaxMR, (256 * 1024 / row_bytes) / kMaxMR * kMaxMR);
}

}  // namespace

void bgemm_8x16__avx512(BMX_BGEMM_ARGS) {
  if (m1 <= m0 || n1 <= n0) return;
  thread_local ScratchBuffer<word_t> buf;
  word_t* panel = buf.get(static_cast<std::size_t>(std::max<std::int64_t>(words, 1) * kPanel));
  const std::int64_t mc = row_block(words);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t nb = n0; nb < n1; nb += kPanel) {
      const int nv = static_cast<int>(std::min<std::int64_t>(kPanel, n1 - nb));
      transpose_panel(b, ldb, nb, nv, words, panel);
      rows_panel(a, lda, panel, mb, me, nb, nv, words, k_bits, c, ldc);
    }
  }
}

std::int64_t bgemm_8x16__avx512_packed_b_words(std::int64_t n, std::int64_t words) {
  return (n + kPanel - 1) / kPanel * kPanel * std::max<std::int64_t>(words, 1);
}

void bgemm_8x16__avx512_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, word_t* out) {
  const std::int64_t stride = std::max<std::int64_t>(words, 1) * kPanel;
  for (std::int64_t nb = 0; nb < n; nb += kPanel) {
    const int nv = static_cast<int>(std::min<std::int64_t>(kPanel, n - nb));
    word_t* panel = out + nb / kPanel * stride;
    if (words == 0) {
      std::fill(panel, panel + kPanel, word_t{0});
      continue;
    }
    transpose_panel(b, ldb, nb, nv, words, panel);
  }
}

void bgemm_8x16__avx512_run_packed(const word_t* a, std::int64_t lda, const word_t* packed_b, std::int64_t m0,
                                   std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                   std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  if (m1 <= m0 || n1 <= n0) return;
  const std::int64_t stride = std::max<std::int64_t>(words, 1) * kPanel;
  const std::int64_t mc = row_block(words);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t nb = n0; nb < n1; nb += kPanel) {
      const int nv = static_cast<int>(std::min<std::int64_t>(kPanel, n1 - nb));
      rows_panel(a, lda, packed_b + nb / kPanel * stride, mb, me, nb, nv, words, k_bits, c, ldc);
    }
  }
}

void bgemm_8x16__avx512_run_packed_t(const word_t* b, std::int64_t ldb, const word_t* packed_a, std::int64_t m0,
                                     std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t words,
                                     std::int32_t k_bits, std::int32_t* c, std::int64_t ldc) {
  if (m1 <= m0 || n1 <= n0) return;
  const std::int64_t stride = std::max<std::int64_t>(words, 1) * kPanel;
  const std::int64_t nc = row_block(words);
  // Roles swapped: rows of B are broadcast against panels of A, tiles stored transposed.
  for (std::int64_t nb = n0; nb < n1; nb += nc) {
    const std::int64_t ne = std::min(n1, nb + nc);
    for (std::int64_t mb = m0; mb < m1; mb += kPanel) {
      const int mv = static_cast<int>(std::min<std::int64_t>(kPanel, m1 - mb));
      rows_panel<true>(b, ldb, packed_a + mb / kPanel * stride, nb, ne, mb, mv, words, k_bits, c, ldc);
    }
  }
}

}  // namespace bmx::kernels
