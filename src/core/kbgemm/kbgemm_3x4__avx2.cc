// AVX2 k-bit bit-plane GEMM in the form of kbgemm_4x16__avx512, fitted to 16 ymm registers
// and to AVX2's lack of a vector popcount. B is stored in panels of 4 rows, word-major with
// its planes interleaved (one ymm holds one word of one plane of the 4 rows, a 64-bit lane
// per row); each A word of each plane is broadcast once and ANDed with every plane of the
// panel, so one word of an A row yields all PA x PB plane pairs for 4 outputs without
// reloads, and each 64-bit lane ends as one output (no horizontal sums).
//
// Popcount: the nibble LUT (vpshufb, Mula et al., "Faster population counts using AVX2
// instructions", 2016) into 8-bit lanes, widened by vpsadbw (which sums each 64-bit lane's
// bytes: exactly one output per lane). Both operands are nibble-split once (lo = x & 0x0f,
// hi = (x >> 4) & 0x0f per byte; (x & y) & 0x0f == (x & 0x0f) & (y & 0x0f)), so a pair
// costs vpand + vpshufb + vpaddb per nibble half: the 6 uops per 256 bit-pairs of the
// binary kernel (bgemm_2x8__avx2, vpxor for vpand), and a 2-bit x 2-bit product ~4x the
// 1-bit one.
//
// Pairs of equal weight 2^(p+q) share an 8-bit accumulator (PA + PB - 1 per row); each
// chunk of at most 255 / (8 * pairs per class) words is widened by vpsadbw and combined by
// shifts into one 64-bit total per row. Register tiles by plane counts (accumulators + B
// planes + LUT + 2 temporaries <= 16): 1 x 1: 8 rows (8 + 2 + 3); 2 x 1: 4 rows (8 + 2 + 3);
// 1 x 2: 4 rows (8 + 4 + 3); 2 x 2: 3 rows (9 + 4 + 3). More planes run as passes over
// chunks of at most 2 A planes x 2 B planes, the first pass storing C and later ones adding
// their shifted totals (every partial sum is at most the final one, so int32 holds it).
// The full tiles' step loops are inline assembly (steps_asm), the others intrinsics.
//
// A is nibble-split per call in blocks of rows (L2), B per call (run) or once (pack_b, a
// model's weights, for run_packed); every 4-row panel (L1) meets all rows of an A block.
#include <immintrin.h>

#include <algorithm>

#include "core/common/scratch.h"
#include "core/kbgemm/kernels.h"

namespace bmx::kernels {

namespace {

constexpr int kPanel = 4;  // B rows per panel: one ymm of 64-bit lanes
constexpr word_t kLow4 = 0x0f0f0f0f0f0f0f0fULL;

alignas(32) const std::uint8_t kNibbleLut[32] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                                  0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

// Where a plane chunk's results go: C rows at c (stride ldc), scaled by 2^shift, stored
// (first pass) or added (later passes); nv valid panel columns.
struct Out {
  std::int32_t* c;
  std::int64_t ldc;
  int shift, nv;
  bool add;
};

// The 4 lanes of total (one output each, exact in int64, the final sum fits int32) times
// 2^shift to c[0, nv).
inline void store4(std::int32_t* c, __m256i total, const Out& o) {
  total = _mm256_sll_epi64(total, _mm_cvtsi32_si128(o.shift));
  __m128i v = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(total, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
  if (o.nv == kPanel) {
    if (o.add) v = _mm_add_epi32(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c), v);
    return;
  }
  alignas(16) std::int32_t t[kPanel];
  _mm_store_si128(reinterpret_cast<__m128i*>(t), v);
  for (int j = 0; j < o.nv; ++j) c[j] = o.add ? c[j] + t[j] : t[j];
}

// Register rows per tile by plane counts (see the top of the file).
template <int PA, int PB>
constexpr int kRows = PA * PB == 1 ? 8 : PA * PB == 2 ? 4 : 3;

// Words [0, n) of MR rows of the split A (at a: the chunk's plane 0, lo half, of the first
// word of row 0; rows arow words apart, words astep apart, hi half at +1, planes 2 apart)
// against PB planes of one panel (at panel: the chunk's plane 0, lo vector, of the first
// word; hi vector at +4 words, planes 8 apart, words pstep apart), counted into the 8-bit
// accumulators acc[row][p + q]. The portable form, for the last rows % kRows rows of an A
// block (and every tile where the assembly is not compiled). Not inlined: inlined into
// tile(), whose 64-bit totals are live around it, GCC 12 spilled accumulators here.
template <int PA, int PB, int MR>
__attribute__((noinline)) void steps_c(const word_t* a, std::int64_t arow, std::int64_t astep,
                                       const word_t* panel, std::int64_t pstep, std::int64_t n,
                                       __m256i (&acc)[MR][PA + PB - 1]) {
  const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(kNibbleLut));
  for (std::int64_t w = 0; w < n; ++w, a += astep, panel += pstep) {
    __m256i b[PB][2];
    for (int q = 0; q < PB; ++q)
      for (int h = 0; h < 2; ++h)
        b[q][h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + (q * 2 + h) * kPanel));
    for (int i = 0; i < MR; ++i)
      for (int p = 0; p < PA; ++p)
        for (int h = 0; h < 2; ++h) {
          const __m256i av = _mm256_set1_epi64x(static_cast<long long>(a[i * arow + p * 2 + h]));
          for (int q = 0; q < PB; ++q)
            acc[i][p + q] = _mm256_add_epi8(acc[i][p + q], _mm256_shuffle_epi8(lut, _mm256_and_si256(av, b[q][h])));
        }
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
// The full tiles' step loops in assembly, as bgemm_2x8__avx2's: the accumulators (ymm0-8,
// chosen by the compiler), the B planes of the step (ymm11-14), the LUT (ymm15) and two
// temporaries (ymm9, ymm10) are the 16 registers; compiled from intrinsics, GCC 12 spilled
// accumulators in every tile of more than ~4 of them.
//
// A row r's words: rows 0-2 from a0 (index ar = the row stride in bytes, scales 1 and 2),
// 3-5 from a3, 6-7 from a6; O is the byte offset of plane p, half h: (p * 2 + h) * 8.
#define BMX_KB_R0(O) #O "(%[a0])"
#define BMX_KB_R1(O) #O "(%[a0],%[ar],1)"
#define BMX_KB_R2(O) #O "(%[a0],%[ar],2)"
#define BMX_KB_R3(O) #O "(%[a3])"
#define BMX_KB_R4(O) #O "(%[a3],%[ar],1)"
#define BMX_KB_R5(O) #O "(%[a3],%[ar],2)"
#define BMX_KB_R6(O) #O "(%[a6])"
#define BMX_KB_R7(O) #O "(%[a6],%[ar],1)"
// One A word, broadcast, against the B vector in ymm<B> into accumulator C; against two
// B planes' vectors (ymm<B0>, ymm<B1>) into C0 and C1.
#define BMX_KB_ONE(AMEM, B, C)                      \
  "vpbroadcastq " AMEM ", %%ymm9\n\t"               \
  "vpand %%ymm" #B ", %%ymm9, %%ymm9\n\t"           \
  "vpshufb %%ymm9, %%ymm15, %%ymm9\n\t"             \
  "vpaddb %%ymm9, %[" #C "], %[" #C "]\n\t"
#define BMX_KB_TWO(AMEM, B0, B1, C0, C1)            \
  "vpbroadcastq " AMEM ", %%ymm9\n\t"               \
  "vpand %%ymm" #B0 ", %%ymm9, %%ymm10\n\t"         \
  "vpand %%ymm" #B1 ", %%ymm9, %%ymm9\n\t"          \
  "vpshufb %%ymm10, %%ymm15, %%ymm10\n\t"           \
  "vpshufb %%ymm9, %%ymm15, %%ymm9\n\t"             \
  "vpaddb %%ymm10, %[" #C0 "], %[" #C0 "]\n\t"      \
  "vpaddb %%ymm9, %[" #C1 "], %[" #C1 "]\n\t"
// One row of a step by plane counts PA x PB; B plane q's lo / hi vectors in ymm11 + 2q / 12 + 2q.
#define BMX_KB_ROW11(R, C0) BMX_KB_ONE(R(0), 11, C0) BMX_KB_ONE(R(8), 12, C0)
#define BMX_KB_ROW21(R, C0, C1) BMX_KB_ROW11(R, C0) BMX_KB_ONE(R(16), 11, C1) BMX_KB_ONE(R(24), 12, C1)
#define BMX_KB_ROW12(R, C0, C1) BMX_KB_TWO(R(0), 11, 13, C0, C1) BMX_KB_TWO(R(8), 12, 14, C0, C1)
#define BMX_KB_ROW22(R, C0, C1, C2) \
  BMX_KB_ROW12(R, C0, C1) BMX_KB_TWO(R(16), 11, 13, C1, C2) BMX_KB_TWO(R(24), 12, 14, C1, C2)
#define BMX_KB_LOAD_B1 "vmovdqu (%[bq]), %%ymm11\n\t" "vmovdqu 32(%[bq]), %%ymm12\n\t"
#define BMX_KB_LOAD_B2 BMX_KB_LOAD_B1 "vmovdqu 64(%[bq]), %%ymm13\n\t" "vmovdqu 96(%[bq]), %%ymm14\n\t"
// The loop around one step (n >= 1 words).
#define BMX_KB_LOOP(BODY, ADVANCE)                                                              \
  "vmovdqa (%[lut]), %%ymm15\n\t"                                                               \
  "1:\n\t" BODY ADVANCE "addq %[ps], %[bq]\n\t"                                                 \
  "decq %[n]\n\t"                                                                               \
  "jnz 1b\n\t"
#define BMX_KB_IN [ar] "r"(arow * 8), [as] "r"(astep * 8), [ps] "r"(pstep * 8), [lut] "r"(kNibbleLut)
#define BMX_KB_CLOBBERS "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"

template <int PA, int PB>
void steps_asm(const word_t* a, std::int64_t arow, std::int64_t astep, const word_t* panel, std::int64_t pstep,
               std::int64_t n, __m256i (&c)[kRows<PA, PB>][PA + PB - 1]) {
  const word_t* a3 = a + 3 * arow;
  const word_t* a6 = a + 6 * arow;
  if constexpr (PA == 1 && PB == 1) {
    __asm__(BMX_KB_LOOP(BMX_KB_LOAD_B1 BMX_KB_ROW11(BMX_KB_R0, c0) BMX_KB_ROW11(BMX_KB_R1, c1)
                            BMX_KB_ROW11(BMX_KB_R2, c2) BMX_KB_ROW11(BMX_KB_R3, c3) BMX_KB_ROW11(BMX_KB_R4, c4)
                                BMX_KB_ROW11(BMX_KB_R5, c5) BMX_KB_ROW11(BMX_KB_R6, c6) BMX_KB_ROW11(BMX_KB_R7, c7),
                        "addq %[as], %[a0]\n\t" "addq %[as], %[a3]\n\t" "addq %[as], %[a6]\n\t")
            : [c0] "+x"(c[0][0]), [c1] "+x"(c[1][0]), [c2] "+x"(c[2][0]), [c3] "+x"(c[3][0]), [c4] "+x"(c[4][0]),
              [c5] "+x"(c[5][0]), [c6] "+x"(c[6][0]), [c7] "+x"(c[7][0]), [a0] "+r"(a), [a3] "+r"(a3),
              [a6] "+r"(a6), [bq] "+r"(panel), [n] "+r"(n)
            : BMX_KB_IN
            : BMX_KB_CLOBBERS);
  } else if constexpr (PA == 2 && PB == 1) {
    __asm__(BMX_KB_LOOP(BMX_KB_LOAD_B1 BMX_KB_ROW21(BMX_KB_R0, c00, c01) BMX_KB_ROW21(BMX_KB_R1, c10, c11)
                            BMX_KB_ROW21(BMX_KB_R2, c20, c21) BMX_KB_ROW21(BMX_KB_R3, c30, c31),
                        "addq %[as], %[a0]\n\t" "addq %[as], %[a3]\n\t")
            : [c00] "+x"(c[0][0]), [c01] "+x"(c[0][1]), [c10] "+x"(c[1][0]), [c11] "+x"(c[1][1]),
              [c20] "+x"(c[2][0]), [c21] "+x"(c[2][1]), [c30] "+x"(c[3][0]), [c31] "+x"(c[3][1]), [a0] "+r"(a),
              [a3] "+r"(a3), [bq] "+r"(panel), [n] "+r"(n)
            : BMX_KB_IN
            : BMX_KB_CLOBBERS);
  } else if constexpr (PA == 1 && PB == 2) {
    __asm__(BMX_KB_LOOP(BMX_KB_LOAD_B2 BMX_KB_ROW12(BMX_KB_R0, c00, c01) BMX_KB_ROW12(BMX_KB_R1, c10, c11)
                            BMX_KB_ROW12(BMX_KB_R2, c20, c21) BMX_KB_ROW12(BMX_KB_R3, c30, c31),
                        "addq %[as], %[a0]\n\t" "addq %[as], %[a3]\n\t")
            : [c00] "+x"(c[0][0]), [c01] "+x"(c[0][1]), [c10] "+x"(c[1][0]), [c11] "+x"(c[1][1]),
              [c20] "+x"(c[2][0]), [c21] "+x"(c[2][1]), [c30] "+x"(c[3][0]), [c31] "+x"(c[3][1]), [a0] "+r"(a),
              [a3] "+r"(a3), [bq] "+r"(panel), [n] "+r"(n)
            : BMX_KB_IN
            : BMX_KB_CLOBBERS);
  } else {
    (void)a3, (void)a6;
    __asm__(BMX_KB_LOOP(BMX_KB_LOAD_B2 BMX_KB_ROW22(BMX_KB_R0, c00, c01, c02)
                            BMX_KB_ROW22(BMX_KB_R1, c10, c11, c12) BMX_KB_ROW22(BMX_KB_R2, c20, c21, c22),
                        "addq %[as], %[a0]\n\t")
            : [c00] "+x"(c[0][0]), [c01] "+x"(c[0][1]), [c02] "+x"(c[0][2]), [c10] "+x"(c[1][0]),
              [c11] "+x"(c[1][1]), [c12] "+x"(c[1][2]), [c20] "+x"(c[2][0]), [c21] "+x"(c[2][1]),
              [c22] "+x"(c[2][2]), [a0] "+r"(a), [bq] "+r"(panel), [n] "+r"(n)
            : BMX_KB_IN
            : BMX_KB_CLOBBERS);
  }
}
#define BMX_KB_HAVE_ASM 1
#endif

// steps_c, or for full tiles the assembly loop.
template <int PA, int PB, int MR>
inline void steps(const word_t* a, std::int64_t arow, std::int64_t astep, const word_t* panel, std::int64_t pstep,
                  std::int64_t n, __m256i (&acc)[MR][PA + PB - 1]) {
#if defined(BMX_KB_HAVE_ASM)
  if constexpr (MR == kRows<PA, PB>)
    steps_asm<PA, PB>(a, arow, astep, panel, pstep, n, acc);
  else
#endif
    steps_c<PA, PB, MR>(a, arow, astep, panel, pstep, n, acc);
}

// The MR x 4 outputs of steps over all words, in chunks that the 8-bit lanes hold, to o.
template <int PA, int PB, int MR>
inline void tile(const word_t* a, std::int64_t arow, std::int64_t astep, const word_t* panel, std::int64_t pstep,
                 std::int64_t words, const Out& o) {
  constexpr int D = PA + PB - 1;                           // weight classes p + q
  constexpr int kChunk = 255 / (8 * (PA < PB ? PA : PB));  // 8 per byte, pair and word
  const __m256i zero = _mm256_setzero_si256();
  __m256i tot[MR];
  for (int i = 0; i < MR; ++i) tot[i] = zero;
  for (std::int64_t w0 = 0; w0 < words; w0 += kChunk) {
    __m256i acc[MR][D];
    for (int i = 0; i < MR; ++i)
      for (int d = 0; d < D; ++d) acc[i][d] = zero;
    const std::int64_t n = std::min(words - w0, std::int64_t{kChunk});
    steps<PA, PB, MR>(a + w0 * astep, arow, astep, panel + w0 * pstep, pstep, n, acc);
    for (int i = 0; i < MR; ++i) {
      __m256i t = _mm256_sad_epu8(acc[i][D - 1], zero);
      for (int d = D - 2; d >= 0; --d)  // Horner: sum_d 2^d * acc[d]
        t = _mm256_add_epi64(_mm256_slli_epi64(t, 1), _mm256_sad_epu8(acc[i][d], zero));
      tot[i] = _mm256_add_epi64(tot[i], t);
    }
  }
  for (int i = 0; i < MR; ++i) store4(o.c + i * o.ldc, tot[i], o);
}

// Rows [0, rows) of the split A against one panel, for one chunk of PA x PB planes.
template <int PA, int PB>
void rows_panel(const word_t* a, std::int64_t arow, std::int64_t astep, const word_t* panel, std::int64_t pstep,
                std::int64_t rows, std::int64_t words, Out o) {
  constexpr int MR = kRows<PA, PB>;
  std::int32_t* c = o.c;
  std::int64_t i = 0;
  for (; i + MR <= rows; i += MR) {
    o.c = c + i * o.ldc;
    tile<PA, PB, MR>(a + i * arow, arow, astep, panel, pstep, words, o);
  }
  // The last rows % MR rows in tiles of at most 3 rows: steps_c's loop, compiled from
  // intrinsics, keeps their accumulators in registers (not those of 4-7 rows).
  for (; i + 3 <= rows; i += 3) {
    o.c = c + i * o.ldc;
    tile<PA, PB, 3>(a + i * arow, arow, astep, panel, pstep, words, o);
  }
  o.c = c + i * o.ldc;
  if (rows - i == 2) tile<PA, PB, 2>(a + i * arow, arow, astep, panel, pstep, words, o);
  if (rows - i == 1) tile<PA, PB, 1>(a + i * arow, arow, astep, panel, pstep, words, o);
}

// Rows [0, rows) of the split A (all pa planes) against one panel of pb planes, nv valid
// columns; c points at the panel's column 0 in row 0. Chunks of <= 2 x 2 planes.
void planes_panel(const word_t* a, std::int64_t rows, const word_t* panel, std::int64_t words, int pa, int pb,
                  std::int32_t* c, std::int64_t ldc, int nv) {
  const std::int64_t astep = std::int64_t{pa} * 2, arow = words * astep;
  const std::int64_t pstep = std::int64_t{pb} * 2 * kPanel;
  bool add = false;
  for (int p0 = 0; p0 < pa; p0 += 2)
    for (int q0 = 0; q0 < pb; q0 += 2) {
      const int ca = std::min(2, pa - p0), cb = std::min(2, pb - q0);
      const word_t* ap = a + p0 * 2;
      const word_t* bp = panel + q0 * 2 * kPanel;
      const Out o{c, ldc, p0 + q0, nv, add};
      switch ((ca - 1) * 2 + (cb - 1)) {
        case 0: rows_panel<1, 1>(ap, arow, astep, bp, pstep, rows, words, o); break;
        case 1: rows_panel<1, 2>(ap, arow, astep, bp, pstep, rows, words, o); break;
        case 2: rows_panel<2, 1>(ap, arow, astep, bp, pstep, rows, words, o); break;
        default: rows_panel<2, 2>(ap, arow, astep, bp, pstep, rows, words, o); break;
      }
      add = true;
    }
}

// Rows [0, count) of A split into lo / hi nibble words: plane p, word w of row r at
// out[((r * words + w) * pa + p) * 2] (lo) and + 1 (hi).
void split_a(const word_t* a, std::int64_t lda, std::int64_t count, std::int64_t words, int pa, word_t* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (std::int64_t r = 0; r < count; ++r) {
    word_t* d = out + r * words * pa * 2;
    for (int p = 0; p < pa; ++p) {
      const word_t* src = a + r * lda + p * words;
      std::int64_t w = 0;
      for (; w + 4 <= words; w += 4) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + w));
        const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        const __m256i x = _mm256_unpacklo_epi64(lo, hi);  // words w, w + 2
        const __m256i y = _mm256_unpackhi_epi64(lo, hi);  // words w + 1, w + 3
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + ((w + 0) * pa + p) * 2), _mm256_castsi256_si128(x));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + ((w + 1) * pa + p) * 2), _mm256_castsi256_si128(y));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + ((w + 2) * pa + p) * 2), _mm256_extracti128_si256(x, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + ((w + 3) * pa + p) * 2), _mm256_extracti128_si256(y, 1));
      }
      for (; w < words; ++w) {
        d[(w * pa + p) * 2] = src[w] & kLow4;
        d[(w * pa + p) * 2 + 1] = (src[w] >> 4) & kLow4;
      }
    }
  }
}

// Words of one panel (at least one, so that words = 0 still has a buffer).
std::int64_t panel_words(std::int64_t words, int pb) {
  return std::max<std::int64_t>(words * pb * 2 * kPanel, kPanel);
}

// Rows [0, count) of B in panels of 4 rows, word-major with planes interleaved: the lo
// nibbles of plane q, word w of the panel's rows at panel[(w * pb + q) * 8 + [0, 4)], the
// hi nibbles at + 4; rows past count are 0.
void split_b(const word_t* b, std::int64_t ldb, std::int64_t count, std::int64_t words, int pb, word_t* out) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  static const word_t kZeros[1] = {0};
  for (std::int64_t nb = 0; nb < count; nb += kPanel) {
    word_t* d = out + nb / kPanel * panel_words(words, pb);
    if (words == 0) {
      std::fill(d, d + panel_words(words, pb), word_t{0});
      continue;
    }
    const word_t* rows[kPanel];
    std::int64_t step[kPanel];  // 0 over kZeros for missing rows
    for (int r = 0; r < kPanel; ++r) {
      const bool ok = nb + r < count;
      rows[r] = ok ? b + (nb + r) * ldb : kZeros;
      step[r] = ok ? 1 : 0;
    }
    for (std::int64_t w = 0; w < words; ++w)
      for (int q = 0; q < pb; ++q) {
        const std::int64_t o = q * words + w;
        const __m256i v = _mm256_setr_epi64x(
            static_cast<long long>(rows[0][o * step[0]]), static_cast<long long>(rows[1][o * step[1]]),
            static_cast<long long>(rows[2][o * step[2]]), static_cast<long long>(rows[3][o * step[3]]));
        __m256i* dv = reinterpret_cast<__m256i*>(d + (w * pb + q) * 2 * kPanel);
        _mm256_storeu_si256(dv, _mm256_and_si256(v, low4));
        _mm256_storeu_si256(dv + 1, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
      }
  }
}

// The loop of run and run_packed: panels (B split here, or pack_b's output for all rows
// with n0 a multiple of 4) against blocks of split A rows (~256 KiB, L2).
void blocked(const word_t* a, std::int64_t lda, const word_t* panels, std::int64_t m0, std::int64_t m1,
             std::int64_t n0, std::int64_t n1, std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc) {
  const std::int64_t arow = std::max<std::int64_t>(words * pa * 2, 1);
  const std::int64_t mc = std::max<std::int64_t>(24, (256 * 1024 / 8 / arow) / 24 * 24);  // 24: every MR divides it
  thread_local ScratchBuffer<word_t> abuf;
  word_t* as = abuf.get(static_cast<std::size_t>(std::min(mc, m1 - m0) * arow));
  const std::int64_t stride = panel_words(words, pb);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t rows = std::min(mc, m1 - mb);
    split_a(a + mb * lda, lda, rows, words, pa, as);
    for (std::int64_t nb = n0; nb < n1; nb += kPanel) {
      const int nv = static_cast<int>(std::min<std::int64_t>(kPanel, n1 - nb));
      planes_panel(as, rows, panels + (nb - n0) / kPanel * stride, words, pa, pb, c + mb * ldc + nb, ldc, nv);
    }
  }
}

}  // namespace

void kbgemm_3x4__avx2(BMX_KBGEMM_ARGS) {
  if (m1 <= m0 || n1 <= n0) return;
  thread_local ScratchBuffer<word_t> bbuf;
  const std::int64_t n = n1 - n0;
  word_t* panels = bbuf.get(static_cast<std::size_t>(kbgemm_3x4__avx2_packed_b_words(n, words, pb)));
  split_b(b + n0 * ldb, ldb, n, words, pb, panels);
  blocked(a, lda, panels, m0, m1, n0, n1, words, pa, pb, c, ldc);
}

std::int64_t kbgemm_3x4__avx2_packed_b_words(std::int64_t n, std::int64_t words, int pb) {
  return (n + kPanel - 1) / kPanel * panel_words(words, pb);
}

void kbgemm_3x4__avx2_pack_b(const word_t* b, std::int64_t ldb, std::int64_t n, std::int64_t words, int pb,
                             word_t* out) {
  split_b(b, ldb, n, words, pb, out);
}

void kbgemm_3x4__avx2_run_packed(BMX_KBGEMM_PACKED_ARGS) {
  if (m1 <= m0 || n1 <= n0) return;
  blocked(a, lda, packed_b + n0 / kPanel * panel_words(words, pb), m0, m1, n0, n1, words, pa, pb, c, ldc);
}

}  // namespace bmx::kernels
