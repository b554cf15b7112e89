// AVX-512 VPOPCNTDQ k-bit bit-plane GEMM in the transposed-B form of bgemm_8x16__avx512:
// a panel of 16 B rows is stored word-major with its planes interleaved ([word][plane][16
// rows], two zmm per plane and word), each A word of each plane is broadcast once per word
// and ANDed with every plane of the panel, and each 64-bit lane accumulates one output.
// One word of an A row thus yields all PA x PB plane pairs from registers: per pair and 8
// outputs vpandq + vpopcntq + vpaddq, the 3 uops per 512 MACs of the binary kernel, so a
// 2-bit x 2-bit product costs ~4x the 1-bit one (4 pairs) rather than 4x plus per-pair
// reloads and horizontal sums.
//
// Pairs of equal weight 2^(p+q) share an accumulator (PA + PB - 1 of them per output
// vector); they are combined by shifts once per tile. Register tiles by plane counts:
// 1 x 1: 8 rows x 16 (16 accumulators); 2 x 1 and 1 x 2: 6 x 16 (24); 2 x 2: 4 x 16 (24).
// More planes run as passes over chunks of at most 2 A planes x 2 B planes, the first
// pass storing C and later ones adding their shifted totals (every partial sum is at most
// the final one, so int32 holds it).
//
// Packed form (pack_b / run_packed): B arranged into its panels once (a model's weights).
#include <immintrin.h>

#include <algorithm>

#include "core/common/scratch.h"
#include "core/kbgemm/kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 AVX-512 header false positive
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bmx::kernels {

namespace {

constexpr int kPanel = 16;  // B rows per panel (two zmm of 8 lanes)

// Where a plane chunk's results go: C rows at c (stride ldc), scaled by 2^shift, stored
// (first pass) or added (later passes); nv valid panel columns.
struct Out {
  std::int32_t* c;
  std::int64_t ldc;
  int shift, nv;
  bool add;
};

inline void store8(std::int32_t* c, __mmask8 m, __m512i total, int shift, bool add) {
  __m256i v = _mm512_cvtepi64_epi32(_mm512_sll_epi64(total, _mm_cvtsi32_si128(shift)));
  if (add) v = _mm256_add_epi32(v, _mm256_maskz_loadu_epi32(m, c));
  _mm256_mask_storeu_epi32(c, m, v);
}

// MR rows of A (at a: plane 0 of the chunk, planes `words` apart, rows lda apart) against
// PB planes of one panel (at panel: the chunk's first plane of word 0; pstride words from
// one word to the next). TWO = false: at most 8 valid panel rows, the upper zmm skipped.
template <int PA, int PB, int MR, bool TWO>
inline void tile(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t pstride, std::int64_t words,
                 const Out& o) {
  constexpr int D = PA + PB - 1;  // weight classes p + q
  __m512i lo[MR][D], hi[MR][D];
  for (int i = 0; i < MR; ++i)
    for (int d = 0; d < D; ++d) lo[i][d] = hi[i][d] = _mm512_setzero_si512();
  const word_t* bp = panel;
  for (std::int64_t w = 0; w < words; ++w, bp += pstride) {
    __m512i b0[PB], b1[PB];
    for (int q = 0; q < PB; ++q) {
      b0[q] = _mm512_loadu_si512(bp + q * kPanel);
      b1[q] = TWO ? _mm512_loadu_si512(bp + q * kPanel + 8) : b0[q];
    }
    for (int i = 0; i < MR; ++i) {
      __m512i av[PA];
      for (int p = 0; p < PA; ++p) av[p] = _mm512_set1_epi64(static_cast<long long>(a[i * lda + p * words + w]));
      for (int p = 0; p < PA; ++p)
        for (int q = 0; q < PB; ++q) {
          lo[i][p + q] = _mm512_add_epi64(lo[i][p + q], _mm512_popcnt_epi64(_mm512_and_si512(av[p], b0[q])));
          if (TWO) hi[i][p + q] = _mm512_add_epi64(hi[i][p + q], _mm512_popcnt_epi64(_mm512_and_si512(av[p], b1[q])));
        }
    }
  }
  const int nv = o.nv;
  const __mmask8 m0 = static_cast<__mmask8>(nv >= 8 ? 0xff : (1u << nv) - 1);
  const __mmask8 m1 = static_cast<__mmask8>(nv >= 16 ? 0xff : nv <= 8 ? 0 : (1u << (nv - 8)) - 1);
  for (int i = 0; i < MR; ++i) {
    __m512i tlo = lo[i][D - 1], thi = hi[i][D - 1];
    for (int d = D - 2; d >= 0; --d) {  // Horner: sum_d 2^d * acc[d]
      tlo = _mm512_add_epi64(_mm512_slli_epi64(tlo, 1), lo[i][d]);
      if (TWO) thi = _mm512_add_epi64(_mm512_slli_epi64(thi, 1), hi[i][d]);
    }
    store8(o.c + i * o.ldc, m0, tlo, o.shift, o.add);
    if (TWO && m1) store8(o.c + i * o.ldc + 8, m1, thi, o.shift, o.add);
  }
}

// Rows [0, rows) of A, rows < MR, by the tile of exactly that many rows.
template <int PA, int PB, int MR, bool TWO>
void rows_tail(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t pstride, std::int64_t words,
               const Out& o, int rows) {
  if constexpr (MR > 0) {
    if (rows == MR) {
      tile<PA, PB, MR, TWO>(a, lda, panel, pstride, words, o);
      return;
    }
    rows_tail<PA, PB, MR - 1, TWO>(a, lda, panel, pstride, words, o, rows);
  }
}

// Rows [mb, me) of A against one panel, for one chunk of PA x PB planes.
template <int PA, int PB, bool TWO>
void rows_panel(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t pstride, std::int64_t mb,
                std::int64_t me, std::int64_t words, Out o) {
  constexpr int MR = PA * PB == 1 ? 8 : PA * PB == 2 ? 6 : 4;
  std::int32_t* c = o.c;
  std::int64_t i = mb;
  for (; i + MR <= me; i += MR) {
    o.c = c + i * o.ldc;
    tile<PA, PB, MR, TWO>(a + i * lda, lda, panel, pstride, words, o);
  }
  if (i < me) {
    o.c = c + i * o.ldc;
    rows_tail<PA, PB, MR - 1, TWO>(a + i * lda, lda, panel, pstride, words, o, static_cast<int>(me - i));
  }
}

// Rows [mb, me) of A (all pa planes) against one panel of pb planes, nv valid columns;
// c points at column 0 of the panel in row 0. Chunks of <= 2 x 2 planes, as above.
void planes_panel(const word_t* a, std::int64_t lda, const word_t* panel, std::int64_t mb, std::int64_t me,
                  std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc, int nv) {
  const std::int64_t pstride = std::int64_t{pb} * kPanel;
  bool add = false;
  for (int p0 = 0; p0 < pa; p0 += 2)
    for (int q0 = 0; q0 < pb; q0 += 2) {
      const int ca = std::min(2, pa - p0), cb = std::min(2, pb - q0);
      const word_t* ap = a + p0 * words;
      const word_t* bp = panel + q0 * kPanel;
      const Out o{c, ldc, p0 + q0, nv, add};
      const int kind = (ca - 1) * 2 + (cb - 1);
      if (nv > 8) {
        if (kind == 0) rows_panel<1, 1, true>(ap, lda, bp, pstride, mb, me, words, o);
        if (kind == 1) rows_panel<1, 2, true>(ap, lda, bp, pstride, mb, me, words, o);
        if (kind == 2) rows_panel<2, 1, true>(ap, lda, bp, pstride, mb, me, words, o);
        if (kind == 3) rows_panel<2, 2, true>(ap, lda, bp, pstride, mb, me, words, o);
      } else {
        if (kind == 0) rows_panel<1, 1, false>(ap, lda, bp, pstride, mb, me, words, o);
        if (kind == 1) rows_panel<1, 2, false>(ap, lda, bp, pstride, mb, me, words, o);
        if (kind == 2) rows_panel<2, 1, false>(ap, lda, bp, pstride, mb, me, words, o);
        if (kind == 3) rows_panel<2, 2, false>(ap, lda, bp, pstride, mb, me, words, o);
      }
      add = true;
    }
}

// Panel of 16 B rows starting at row nb (nv valid), word-major with planes interleaved:
// plane q, word w of row r at panel[(w * pb + q) * 16 + r], missing rows 0.
void transpose_panel(const word_t* b, std::int64_t ldb, std::int64_t nb, int nv, std::int64_t words, int pb,
                     word_t* panel) {
  const long long l = ldb;
  const __m512i off0 = _mm512_setr_epi64(0, l, 2 * l, 3 * l, 4 * l, 5 * l, 6 * l, 7 * l);
  const __m512i off1 = _mm512_add_epi64(off0, _mm512_set1_epi64(8 * l));
  const __mmask8 g0 = static_cast<__mmask8>(nv >= 8 ? 0xff : (1u << nv) - 1);
  const __mmask8 g1 = static_cast<__mmask8>(nv >= 16 ? 0xff : nv <= 8 ? 0 : (1u << (nv - 8)) - 1);
  const word_t* base = b + nb * ldb;
  for (std::int64_t w = 0; w < words; ++w)
    for (int q = 0; q < pb; ++q) {
      const auto* p = reinterpret_cast<const long long*>(base + q * words + w);
      word_t* d = panel + (w * pb + q) * kPanel;
      _mm512_storeu_si512(d, _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), g0, off0, p, 8));
      _mm512_storeu_si512(d + 8, _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), g1, off1, p, 8));
    }
}

// A rows are read in place; keep a block of them (~256 KiB, all planes) in L2 while
// panels pass.
std::int64_t row_block(std::int64_t words, int pa) {
  const std::int64_t row_bytes = std::max<std::int64_t>(pa * words, 1) * 8;
  return std::max<std::int64_t>(24, (256 * 1024 / row_bytes) / 24 * 24);  // 24: every MR divides it
}

std::int64_t panel_words(std::int64_t words, int pb) { return std::max<std::int64_t>(words * pb, 1) * kPanel; }

}  // namespace

void kbgemm_4x16__avx512(BMX_KBGEMM_ARGS) {
  if (m1 <= m0 || n1 <= n0) return;
  thread_local ScratchBuffer<word_t> buf;
  word_t* panel = buf.get(static_cast<std::size_t>(panel_words(words, pb)));
  const std::int64_t mc = row_block(words, pa);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t nb = n0; nb < n1; nb += kPanel) {
      const int nv = static_cast<int>(std::min<std::int64_t>(kPanel, n1 - nb));
      transpose_panel(b, ldb, nb, nv, words, pb, panel);
      planes_panel(a, lda, panel, mb, me, words, pa, pb, c + nb, ldc, nv);
    }
  }
}

std::int64_t kbgemm_4x16__avx512_packed_b_words(std::int64_t n, std::int64_t words, int pb) {
  return (n + kPanel - 1) / kPanel * panel_words(words, pb);
}

void kbgemm_4x16__avx512_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, int pb,
                                word_t* out) {
  const std::int64_t stride = panel_words(words, pb);
  for (std::int64_t nb = 0; nb < n; nb += kPanel) {
    word_t* panel = out + nb / kPanel * stride;
    if (words == 0) {
      std::fill(panel, panel + stride, word_t{0});
      continue;
    }
    transpose_panel(b, ldb, nb, static_cast<int>(std::min<std::int64_t>(kPanel, n - nb)), words, pb, panel);
  }
}

void kbgemm_4x16__avx512_run_packed(BMX_KBGEMM_PACKED_ARGS) {
  if (m1 <= m0 || n1 <= n0) return;
  const std::int64_t stride = panel_words(words, pb);
  const std::int64_t mc = row_block(words, pa);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t nb = n0; nb < n1; nb += kPanel) {
      const int nv = static_cast<int>(std::min<std::int64_t>(kPanel, n1 - nb));
      planes_panel(a, lda, packed_b + nb / kPanel * stride, mb, me, words, pa, pb, c + nb, ldc, nv);
    }
  }
}

}  // namespace bmx::kernels
