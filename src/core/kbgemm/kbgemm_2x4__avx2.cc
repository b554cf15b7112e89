// AVX2 k-bit bit-plane GEMM: per plane pair (p, q) and 256 bits of one (m, n) pair,
// popcount(a_p & b_q) by the nibble LUT (vpshufb, Mula et al., "Faster population counts
// using AVX2 instructions", 2016) into 8-bit lanes, widened by vpsadbw into 64-bit lanes
// every <= 31 steps (8 per byte and step), shifted by p + q (the pair's weight 2^(p+q))
// and added to the tile's totals. 2x4 register tile; the last words % 4 words of a plane
// are one masked step (vpmaskmovq reads nothing past the plane).
#include <immintrin.h>

#include <algorithm>

#include "core/kbgemm/blocking.h"
#include "core/kbgemm/kernels.h"

namespace bmx::kernels {

namespace {

constexpr int kStepWords = 4;   // 256 bits per step
constexpr int kMaxSteps8 = 31;  // 8-bit lanes: each step adds at most 8 per byte

inline std::int64_t hsum64(__m256i v) {
  const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

// The register tile that blocking.h's loops call (MR x NR outputs).
template <int MR, int NR>
struct Tile {
  static void run(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb, std::int64_t words, int pa,
                  int pb, std::int32_t* c, std::int64_t ldc);
};

template <int MR, int NR>
inline void Tile<MR, NR>::run(const word_t* a, std::int64_t lda, const word_t* b, std::int64_t ldb,
                              std::int64_t words, int pa, int pb, std::int32_t* c, std::int64_t ldc) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                       2, 3, 2, 3, 3, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  const std::int64_t full = words / kStepWords, rem = words % kStepWords;
  const std::int64_t steps = full + (rem ? 1 : 0);
  // Lanes [0, rem) of the last step.
  const __m256i tail = _mm256_cmpgt_epi64(_mm256_set1_epi64x(rem), _mm256_setr_epi64x(0, 1, 2, 3));
  auto load = [&](const word_t* p, std::int64_t s) {
    const auto* q = reinterpret_cast<const long long*>(p + s * kStepWords);
    return s < full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)) : _mm256_maskload_epi64(q, tail);
  };
  __m256i tot[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < NR; ++s) tot[r][s] = zero;
  for (int p = 0; p < pa; ++p)
    for (int q = 0; q < pb; ++q) {
      const word_t* ap = a + p * words;
      const word_t* bp = b + q * words;
      const __m128i shift = _mm_cvtsi32_si128(p + q);
      for (std::int64_t s0 = 0; s0 < steps; s0 += kMaxSteps8) {
        const std::int64_t s1 = std::min(steps, s0 + kMaxSteps8);
        __m256i cnt[MR][NR];
        for (int r = 0; r < MR; ++r)
          for (int s = 0; s < NR; ++s) cnt[r][s] = zero;
        for (std::int64_t st = s0; st < s1; ++st) {
          __m256i alo[MR], ahi[MR];
          for (int r = 0; r < MR; ++r) {
            const __m256i v = load(ap + r * lda, st);
            alo[r] = _mm256_and_si256(v, low4);
            ahi[r] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
          }
          for (int s = 0; s < NR; ++s) {
            // (x & y) & 0x0f == (x & 0x0f) & (y & 0x0f): split each operand once per step.
            const __m256i v = load(bp + s * ldb, st);
            const __m256i blo = _mm256_and_si256(v, low4);
            const __m256i bhi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            for (int r = 0; r < MR; ++r) {
              cnt[r][s] = _mm256_add_epi8(cnt[r][s], _mm256_shuffle_epi8(lut, _mm256_and_si256(alo[r], blo)));
              cnt[r][s] = _mm256_add_epi8(cnt[r][s], _mm256_shuffle_epi8(lut, _mm256_and_si256(ahi[r], bhi)));
            }
          }
        }
        for (int r = 0; r < MR; ++r)
          for (int s = 0; s < NR; ++s)
            tot[r][s] = _mm256_add_epi64(tot[r][s], _mm256_sll_epi64(_mm256_sad_epu8(cnt[r][s], zero), shift));
      }
    }
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < NR; ++s) c[r * ldc + s] = static_cast<std::int32_t>(hsum64(tot[r][s]));
}

}  // namespace

void kbgemm_2x4__avx2(BMX_KBGEMM_ARGS) {
  // A block of A rows (~128 KiB) stays in L2 while 4-row panels of B pass through L1.
  kbgemm_blocking::blocked<2, 4, Tile>(a, lda, b, ldb, m0, m1, n0, n1, words, pa, pb, c, ldc, 128 * 1024);
}

}  // namespace bmx::kernels
